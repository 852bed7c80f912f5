#!/usr/bin/env bash
# The whole local stack on this machine, without Docker, until Ctrl-C:
#   1. the Prefect server on 127.0.0.1:$PREFECT_PORT (UI at http://127.0.0.1:4200),
#   2. the served deployments (python -m pipelines.deployments: retrain on cron, watch-new-data,
#      monitor-drift),
#   3. the BentoML service (bentoml serve serving.service:EmotionService, port serving.port).
# Logs: artifacts/stack/{prefect-server,flows,service}.log. Ctrl-C (or any part dying) stops
# everything this script started, newest first.
#
#   bash scripts/stack.sh                  # FEROPS_STACK_SERVICE=0 leaves the service out
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY="$ROOT/.venv/bin/python"
LOGS="$ROOT/artifacts/stack"
PREFECT_PORT=${PREFECT_PORT:-4200}
export PREFECT_API_URL="http://127.0.0.1:$PREFECT_PORT/api"
mkdir -p "$LOGS"
[ -x "$PY" ] || { echo "error: no .venv here; run: bash scripts/env.sh" >&2; exit 1; }

# Each background job gets its own process group (job control), so stopping a part stops
# its children too (the served flows start flow-run subprocesses; dvc starts training).
set -m
NAMES=()
PIDS=()

start() {  # start NAME LOGFILE COMMAND...
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  NAMES+=("$name")
  PIDS+=("$!")
  echo "==> $name started (pid $!, log ${log#"$ROOT"/})"
}

stop_all() {
  trap - INT TERM EXIT
  local i pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill -0 "$pid" 2>/dev/null || continue
    echo "==> stopping ${NAMES[i]}"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

wait_for() {  # wait_for NAME URL SECONDS
  "$PY" - "$2" "$3" <<'EOF' || { echo "error: $1 did not answer at $2" >&2; return 1; }
import sys, time, urllib.request
url, deadline = sys.argv[1], time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        urllib.request.urlopen(url, timeout=2).read()
        sys.exit(0)
    except Exception:
        time.sleep(1)
sys.exit(1)
EOF
}

# 1. Prefect server (reused when one already answers on the port).
if wait_for "Prefect server" "$PREFECT_API_URL/health" 1 2>/dev/null; then
  echo "==> Prefect server already running at $PREFECT_API_URL (not started here)"
else
  start "Prefect server" "$LOGS/prefect-server.log" \
    "$ROOT/.venv/bin/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
  wait_for "Prefect server" "$PREFECT_API_URL/health" 120
fi

# 2. The deployments, served from one process (no work pool or worker needed).
start "Prefect flows" "$LOGS/flows.log" "$PY" -m pipelines.deployments --project-dir "$ROOT"

# 3. The BentoML service, from the repository root (it reads params.yaml there).
read -r HOST PORT < <("$PY" -c 'from ferops.config import load_params
s = load_params().serving
print(s.host, s.port)')
if [ "${FEROPS_STACK_SERVICE:-1}" = 0 ]; then
  echo "==> service left out (FEROPS_STACK_SERVICE=0)"
elif [ ! -f serving/service.py ]; then
  echo "==> warning: serving/service.py not found; running without the service" >&2
else
  start "BentoML service" "$LOGS/service.log" \
    "$ROOT/.venv/bin/bentoml" serve serving.service:EmotionService --host "$HOST" --port "$PORT"
fi

echo "==> stack up. Prefect UI: http://127.0.0.1:$PREFECT_PORT  service: http://$HOST:$PORT"
echo "    (the service answers once a champion is in the BentoML store). Ctrl-C stops all."
# Stay in the foreground; if any part exits on its own, say which and stop the rest.
while true; do
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
      echo "error: ${NAMES[i]} exited; see its log in ${LOGS#"$ROOT"/}/" >&2
      exit 1
    fi
  done
  sleep 2
done
