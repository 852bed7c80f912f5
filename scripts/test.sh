#!/usr/bin/env bash
# Run the whole test suite (what CI runs). Extra arguments go to pytest.
# On a machine without ../shared/data (FER2013/FER+), add: -m "not fer2013"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env.sh
case " $* " in   # tests/stack runs the containerised stack: it needs a Docker engine
  *"not slow"*|*"not stack"*) ;;
  *) bash scripts/docker-engine.sh ;;
esac
case " $* " in   # the browser tests drive Debian's Chromium through Playwright
  *"not slow"*) ;;
  *) bash scripts/browser.sh ;;
esac
source .venv/bin/activate
ruff check src tests benchmarks pipelines serving
python -m pytest "$@"
