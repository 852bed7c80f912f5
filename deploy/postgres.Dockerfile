# PostgreSQL 15 from Debian (the same base as the project image; no Docker Hub needed).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
RUN command -v /usr/lib/postgresql/15/bin/postgres >/dev/null || { \
      apt-get update && apt-get install -y --no-install-recommends postgresql-15 \
      && rm -rf /var/lib/apt/lists/*; }
COPY postgres/entrypoint.sh /usr/local/bin/ferops-postgres
RUN chmod 755 /usr/local/bin/ferops-postgres \
 && mkdir -p /var/lib/postgresql/data && chown postgres:postgres /var/lib/postgresql/data
USER postgres
ENTRYPOINT ["/usr/local/bin/ferops-postgres"]
