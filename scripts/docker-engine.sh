#!/usr/bin/env bash
# Make sure a Docker engine runs here (the stack tier, tests/stack, needs one): install Debian's
# docker.io, docker-compose 1.29 and debootstrap if missing (root), start dockerd if it is not
# answering. Idempotent and quick when the engine is up.
set -euo pipefail
if docker info >/dev/null 2>&1 && command -v docker-compose >/dev/null && command -v debootstrap >/dev/null; then
  exit 0
fi
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "error: install ${missing[*]} (needs root)" >&2; exit 1; }
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "error: start the Docker engine (dockerd)" >&2; exit 1; }
  echo "==> starting dockerd (log: /var/log/ferops-dockerd.log)"
  nohup dockerd >/var/log/ferops-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "error: dockerd did not start" >&2; tail -20 /var/log/ferops-dockerd.log >&2; exit 1; }
fi
echo "==> Docker engine $(docker version -f '{{.Server.Version}}')"
