#!/bin/sh
# PostgreSQL entrypoint for berth's locally built image: initialises the cluster on first start
# from *_FILE secrets (never from plain env), then runs the server in the foreground.
set -eu
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
BIN=/usr/lib/postgresql/15/bin
export PGDATA

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD_FILE:?POSTGRES_PASSWORD_FILE must name the password file}"
  user="${POSTGRES_USER:-postgres}"
  "$BIN/initdb" -D "$PGDATA" -U "$user" --pwfile="$POSTGRES_PASSWORD_FILE" \
    -E UTF8 --no-locale --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "host all all ::/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$user\";" | "$BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "entrypoint: initialised cluster in $PGDATA"
fi
exec "$BIN/postgres" -D "$PGDATA" "$@"
