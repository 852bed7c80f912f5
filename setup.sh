#!/usr/bin/env bash
# One command on a fresh clone: pinned environment, the embedded demo data, the pipeline.
#   bash setup.sh            # then: source .venv/bin/activate
# Extra arguments go to `dvc repro` (e.g. `bash setup.sh encode` stops after that stage).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/env.sh
source .venv/bin/activate
# The demo data lives in the project's own local DVC remote (dvc-remote/): no network needed.
dvc pull --quiet data.dvc
dvc repro "$@"
# Promote the new model if it passes the gate (the first one becomes @champion).
ferops promote
dvc status
