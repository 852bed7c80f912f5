#!/usr/bin/env bash
# Build the local base image (Debian bookworm: python3.11, PostgreSQL 15, git) from Debian's
# package mirror, for machines that cannot pull from Docker Hub. On a machine that can, skip
# this and build with BASE_IMAGE=python:3.11-slim (deploy/README.md).
#   bash deploy/base-image.sh [TAG]        # default ferops-base:bookworm; about 70-120 s
# Needs root, debootstrap and a running Docker engine. Does nothing if TAG exists.
set -euo pipefail
TAG="${1:-ferops-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "==> $TAG exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "error: apt-get install debootstrap" >&2; exit 1; }
root="$(mktemp -d /tmp/ferops-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
# python3-venv: the project venv; git: dvc and the lineage record commits (OpenCV is the
# headless wheel: no GL); postgresql-15: the stack's database (same base, one download).
packages=python3,python3-venv,ca-certificates,git,postgresql-15,procps
echo "==> debootstrap bookworm ($MIRROR) into $root"
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$MIRROR" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
echo "==> docker import $TAG"
tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
docker image ls "$TAG"
