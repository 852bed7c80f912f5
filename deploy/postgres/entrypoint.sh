#!/bin/bash
# Start PostgreSQL on 127.0.0.1:$PGPORT with the data directory on the volume; on the first
# start create the cluster (password from POSTGRES_PASSWORD, never a default) and the two
# databases: mlflow (MLflow's backend store) and prefect (the Prefect server's).
set -euo pipefail
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (deploy/.env)}"
PGDATA="${PGDATA:-/var/lib/postgresql/data/pgdata}"
PGPORT="${PGPORT:-5432}"
BIN=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  pw="$(mktemp)"; printf '%s' "$POSTGRES_PASSWORD" > "$pw"
  "$BIN/initdb" -D "$PGDATA" -U ferops --pwfile="$pw" --auth=scram-sha-256 >/dev/null
  rm -f "$pw"
  "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=127.0.0.1 -p $PGPORT -c unix_socket_directories=/tmp" \
    -w start >/dev/null
  for db in mlflow prefect; do
    PGPASSWORD="$POSTGRES_PASSWORD" "$BIN/psql" -h 127.0.0.1 -p "$PGPORT" -U ferops \
      -d postgres -qc "CREATE DATABASE $db"
  done
  "$BIN/pg_ctl" -D "$PGDATA" -w stop >/dev/null
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses=127.0.0.1 -p "$PGPORT" \
  -c unix_socket_directories=/tmp
