#!/usr/bin/env bash
# The stack's Prefect worker (inside the project image, checkout at /opt/ferops): make sure the
# process work pool exists, (re)register the three deployments of deploy/prefect.yaml, then
# run flow runs from the pool as subprocesses of this container. Their heartbeats (every
# pipelines.heartbeat_s) let the server crash the runs of a killed worker (pipelines/zombies.py).
set -euo pipefail
cd /opt/ferops
prefect --no-prompt work-pool create ferops-process --type process --overwrite >/dev/null
prefect --no-prompt deploy --all --prefect-file deploy/prefect.yaml
PREFECT_FLOWS_HEARTBEAT_FREQUENCY="$(python -m pipelines.zombies)"
export PREFECT_FLOWS_HEARTBEAT_FREQUENCY
exec prefect worker start --pool ferops-process --type process
