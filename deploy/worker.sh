#!/usr/bin/env bash
# The stack's Prefect worker (inside the project image, checkout at /opt/ferops): make sure the
# process work pool exists, (re)register the three deployments of deploy/prefect.yaml, then
# run flow runs from the pool as subprocesses of this container.
set -euo pipefail
cd /opt/ferops
prefect --no-prompt work-pool create ferops-process --type process --overwrite >/dev/null
prefect --no-prompt deploy --all --prefect-file deploy/prefect.yaml
exec prefect worker start --pool ferops-process --type process
