#!/usr/bin/env bash
# First-start initialisation of the postgres stand-in (images/postgres/Dockerfile),
# with the environment variables of the official image's docker-entrypoint.sh:
# POSTGRES_PASSWORD (required), POSTGRES_USER (default postgres), POSTGRES_DB
# (default POSTGRES_USER), PGDATA. Later starts find PG_VERSION and only run postgres.
set -euo pipefail

if [[ "${1:-}" != "postgres" ]]; then
    exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (the chart takes it from its metadata Secret)}"
db_user="${POSTGRES_USER:-postgres}"
db_name="${POSTGRES_DB:-$db_user}"

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    initdb --username="$db_user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA"
    printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
    printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
    if [[ "$db_name" != "postgres" ]]; then
        pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
        psql -v ON_ERROR_STOP=1 --username "$db_user" --dbname postgres \
            --set db="$db_name" <<<'CREATE DATABASE :"db";'
        pg_ctl -D "$PGDATA" -m fast -w stop
    fi
fi

exec "$@"
