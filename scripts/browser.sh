#!/usr/bin/env bash
# The browser tier (tests/serving/test_browser.py) needs Chromium from Debian and Playwright
# from PyPI (requirements-browser.txt); Playwright drives the system Chromium, so nothing is
# downloaded at test time. Idempotent and quick when both are there; Chromium needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "error: install chromium (needs root)" >&2; exit 1; }
  echo "==> apt-get install chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
want="$(sed -n 's/^playwright==//p' requirements-browser.txt)"
have="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("playwright"))' 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
  echo "==> pip install playwright==$want"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-browser.txt
fi
