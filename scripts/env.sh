#!/usr/bin/env bash
# Create (or refresh) the pinned Python 3.11 environment in .venv from requirements.lock.
# Idempotent: does nothing when .venv already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY="$candidate"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "error: ferops needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

stamp=.venv/.ferops-lock
# The stamp covers pyproject.toml too: a new console script needs the editable reinstall.
if [ -x .venv/bin/python ] && cat requirements.lock pyproject.toml | cmp -s - "$stamp" 2>/dev/null; then
  exit 0
fi
if [ -x .venv/bin/python ] && cmp -s requirements.lock <(head -c "$(wc -c < requirements.lock)" "$stamp") 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  cat requirements.lock pyproject.toml > "$stamp"
  exit 0
fi
echo "==> creating .venv with $("$PY" --version) from requirements.lock (about 2-3 minutes)"
"$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
cat requirements.lock pyproject.toml > "$stamp"
echo "==> environment ready: source .venv/bin/activate"
