#!/usr/bin/env bash
# The containerised ferops stack (deploy/docker-compose.yml), one command each way:
#   bash deploy/stack.sh up       # build (cached), start, wait until every part is healthy
#   bash deploy/stack.sh down     # stop and remove the containers (volumes are kept)
#   bash deploy/stack.sh build | ps | logs [SERVICE] | wipe (down and delete the volumes)
# Environment: BASE_IMAGE (default: python:3.11-slim if Docker can pull it, else the local
# Debian base from deploy/base-image.sh), FEROPS_PROJECT (the checkout mounted into the
# worker and the service; default this one), MLFLOW_PORT, PREFECT_PORT, PGPORT (the service's
# port is serving.port in that checkout's params.yaml), FEROPS_STACK_NAME (the compose project,
# default ferops: its containers and volumes are named after it, so two stacks with different
# names and ports can run on one host). Every server listens on 127.0.0.1 only (host networking).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
export FEROPS_PROJECT="${FEROPS_PROJECT:-$(dirname "$here")}"
WHEELS="${FEROPS_WHEELS:-$HOME/.cache/ferops/wheels}"
WHEELS_PORT="${FEROPS_WHEELS_PORT:-8765}"
export WHEELS_URL="http://127.0.0.1:$WHEELS_PORT/"
PY="${PYTHON:-$FEROPS_PROJECT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
BUILD_PINS=(pip==26.3 setuptools==84.2.1 wheel==0.48.0)   # the one sdist in the lock needs them

if command -v docker-compose >/dev/null; then COMPOSE=(docker-compose); else COMPOSE=(docker compose); fi
STACK_NAME="${FEROPS_STACK_NAME:-ferops}"
compose() { "${COMPOSE[@]}" -p "$STACK_NAME" -f "$here/docker-compose.yml" --env-file "$here/.env" "$@"; }

ensure_env() {
  # Secrets live in deploy/.env (git-ignored): random ones on first use, never a default.
  if [ ! -f "$here/.env" ]; then
    umask 077
    token() { "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))'; }
    printf 'POSTGRES_PASSWORD=%s\nFEROPS_API_KEY=%s\n' "$(token)" "$(token)" > "$here/.env"
    echo "==> wrote $here/.env (random POSTGRES_PASSWORD and FEROPS_API_KEY, the service's key)"
  fi
}

pick_base() {
  if [ -z "${BASE_IMAGE:-}" ]; then
    if docker image inspect python:3.11-slim >/dev/null 2>&1 || timeout 20 docker pull -q python:3.11-slim >/dev/null 2>&1; then
      BASE_IMAGE=python:3.11-slim
    else
      BASE_IMAGE=ferops-base:bookworm
      bash "$here/base-image.sh" "$BASE_IMAGE"
    fi
  fi
  export BASE_IMAGE
  echo "==> base image $BASE_IMAGE"
}

build() {
  ensure_env
  pick_base
  mkdir -p "$WHEELS"
  echo "==> pinned wheels in $WHEELS (pip download; cached)"
  "$PY" -m pip download --quiet --disable-pip-version-check -d "$WHEELS" \
    -r "$FEROPS_PROJECT/requirements.lock" -r "$here/requirements-stack.txt" "${BUILD_PINS[@]}" \
    2> >(grep -v "is ignored: it is neither" >&2)
  # The build fetches them from 127.0.0.1 only (host network): no index credentials inside.
  "$PY" -m http.server "$WHEELS_PORT" --bind 127.0.0.1 --directory "$WHEELS" >/dev/null 2>&1 &
  local server=$!
  trap 'kill $server 2>/dev/null || true' RETURN
  local t0=$SECONDS
  compose build postgres mlflow
  echo "==> images built in $((SECONDS - t0)) s"
}

wait_healthy() {
  local t0=$SECONDS deadline=$((SECONDS + ${FEROPS_STACK_TIMEOUT:-300}))
  for svc in postgres mlflow prefect-server; do
    until [ "$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$svc")" 2>/dev/null)" = healthy ]; do
      [ $SECONDS -lt $deadline ] || { echo "error: $svc is not healthy; bash deploy/stack.sh logs $svc" >&2; exit 1; }
      sleep 2
    done
  done
  echo "==> postgres, mlflow, prefect-server healthy after $((SECONDS - t0)) s"
  # The worker registers the deployments of deploy/prefect.yaml when it starts.
  local url="http://127.0.0.1:${PREFECT_PORT:-4200}/api/deployments/name/ferops-retrain/retrain"
  until "$PY" -c "import urllib.request as u; u.urlopen('$url', timeout=5)" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "error: no deployments; bash deploy/stack.sh logs prefect-worker" >&2; exit 1; }
    sleep 2
  done
  echo "==> deployments registered by the worker after $((SECONDS - t0)) s"
}

service_port() {
  (cd "$FEROPS_PROJECT" && "$PY" -c \
    'from ferops.config import load_params; print(load_params("params.yaml").serving.port)')
}

ports_free() {
  # Host networking: a port another process holds would leave a server crash-looping and the
  # stack "unhealthy" minutes later. Say which port at once instead. This stack's own running
  # containers hold its ports legitimately (`up` on a running stack is a no-op).
  ensure_env
  [ -z "$(compose ps -q 2>/dev/null)" ] || return 0
  local port busy=()
  for port in "${PGPORT:-5432}" "${MLFLOW_PORT:-5000}" "${PREFECT_PORT:-4200}" "$(service_port)"; do
    "$PY" -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null || busy+=("$port")
  done
  if [ ${#busy[@]} -gt 0 ]; then
    echo "error: port(s) ${busy[*]} on 127.0.0.1 already in use (another stack or server?)." >&2
    echo "  Stop it, or run this stack beside it with other ports and name:" >&2
    echo "  FEROPS_STACK_NAME=... PGPORT=... MLFLOW_PORT=... PREFECT_PORT=... (serving.port in params.yaml)" >&2
    exit 1
  fi
}

case "${1:-}" in
  build) build ;;
  up)
    ports_free
    build
    t0=$SECONDS
    compose up -d
    wait_healthy
    echo "==> stack up in $((SECONDS - t0)) s:"
    echo "    MLflow  http://127.0.0.1:${MLFLOW_PORT:-5000}   Prefect http://127.0.0.1:${PREFECT_PORT:-4200}"
    echo "    service http://127.0.0.1:$(service_port) (/readyz once a champion exists)"
    ;;
  down) ensure_env; compose down --remove-orphans ;;
  wipe) ensure_env; compose down --remove-orphans --volumes ;;
  ps) ensure_env; compose ps ;;
  logs) ensure_env; shift; compose logs --no-color --tail=200 "$@" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
