#!/bin/sh
# MariaDB entrypoint for berth's locally built stand-in of the official `mariadb` image. It
# honours that image's documented contract: MARIADB_ROOT_PASSWORD, MARIADB_DATABASE,
# MARIADB_USER, MARIADB_PASSWORD (each also as *_FILE and as MYSQL_*), MARIADB_ROOT_HOST,
# data in /var/lib/mysql owned by mysql (999:999), a `healthcheck` user for healthcheck.sh.
# Started as root it fixes ownership and drops to mysql; started as 999 it runs as is.
set -eu
DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock

# file_env VAR: VAR, or the content of the file VAR_FILE names; MYSQL_* as fallbacks.
file_env() {
  var=$1; alt=MYSQL_${1#MARIADB_}
  for v in "$var" "$alt"; do
    eval "val=\${$v:-}"; eval "file=\${${v}_FILE:-}"
    if [ -n "$val" ] && [ -n "$file" ]; then echo "entrypoint: both $v and ${v}_FILE are set" >&2; exit 1; fi
    if [ -n "$file" ]; then val=$(cat "$file"); fi
    if [ -n "$val" ]; then eval "$var=\$val"; export "$var"; return 0; fi
  done
  eval "$var="
}

sql_str() { printf "%s" "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }

if [ "${1#-}" != "$1" ]; then set -- mariadbd "$@"; fi

if [ "$1" = mariadbd ] || [ "$1" = mysqld ]; then
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$DATADIR" /run/mysqld
    chown -R mysql:mysql "$DATADIR" /run/mysqld
    exec setpriv --reuid=999 --regid=999 --clear-groups "$0" "$@"
  fi
  if [ ! -d "$DATADIR/mysql" ]; then
    file_env MARIADB_ROOT_PASSWORD
    file_env MARIADB_DATABASE
    file_env MARIADB_USER
    file_env MARIADB_PASSWORD
    : "${MARIADB_ROOT_HOST:=%}"
    if [ -z "$MARIADB_ROOT_PASSWORD" ] && [ -z "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}" ] \
       && [ -z "${MARIADB_RANDOM_ROOT_PASSWORD:-}" ]; then
      echo "entrypoint: database is uninitialized and no root password option is given" >&2; exit 1
    fi
    if [ -n "${MARIADB_RANDOM_ROOT_PASSWORD:-}" ]; then
      MARIADB_ROOT_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -d '\n/+=')
    fi
    echo "entrypoint: initialising $DATADIR"
    mariadb-install-db --datadir="$DATADIR" --auth-root-authentication-method=normal \
      --skip-test-db --skip-name-resolve >/dev/null
    mariadbd --skip-networking --socket="$SOCKET" --datadir="$DATADIR" &
    pid=$!
    for _ in $(seq 1 60); do mariadb-admin --socket="$SOCKET" -uroot ping >/dev/null 2>&1 && break; sleep 1; done
    hc=$(head -c 24 /dev/urandom | base64 | tr -d '\n/+=')
    rp=$(sql_str "$MARIADB_ROOT_PASSWORD")
    {
      echo "SET @@SESSION.SQL_LOG_BIN=0;"
      echo "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', 'mysql'@'localhost';"
      echo "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname, '\\'');"
      echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$rp';"
      if [ "$MARIADB_ROOT_HOST" != localhost ]; then
        echo "CREATE USER 'root'@'$(sql_str "$MARIADB_ROOT_HOST")' IDENTIFIED BY '$rp';"
        echo "GRANT ALL ON *.* TO 'root'@'$(sql_str "$MARIADB_ROOT_HOST")' WITH GRANT OPTION;"
      fi
      echo "CREATE USER 'healthcheck'@'127.0.0.1' IDENTIFIED BY '$hc';"
      echo "CREATE USER 'healthcheck'@'::1' IDENTIFIED BY '$hc';"
      echo "CREATE USER 'healthcheck'@'localhost' IDENTIFIED BY '$hc';"
      if [ -n "$MARIADB_DATABASE" ]; then
        echo "CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;"
      fi
      if [ -n "$MARIADB_USER" ]; then
        echo "CREATE USER '$(sql_str "$MARIADB_USER")'@'%' IDENTIFIED BY '$(sql_str "$MARIADB_PASSWORD")';"
        if [ -n "$MARIADB_DATABASE" ]; then
          # As the official image: `_` escaped so the grant covers this database only.
          escaped=$(printf "%s" "$MARIADB_DATABASE" | sed 's/_/\\_/g')
          echo "GRANT ALL ON \`$escaped\`.* TO '$(sql_str "$MARIADB_USER")'@'%';"
        fi
      fi
      echo "FLUSH PRIVILEGES;"
    } | mariadb --socket="$SOCKET" -uroot
    umask 077
    printf '[mariadb-client]\nport=3306\nsocket=%s\nuser=healthcheck\npassword=%s\n' "$SOCKET" "$hc" \
      > "$DATADIR/.my-healthcheck.cnf"
    kill "$pid"; wait "$pid" || true
    echo "entrypoint: initialised"
  fi
  exec "$@"
fi
exec "$@"
