#!/bin/sh
# The official mariadb image's healthcheck.sh, for the options berth's templates use:
#   --connect              the server accepts a connection (as the healthcheck user)
#   --innodb_initialized   InnoDB is up
# Every option given must pass; exit 0 healthy, 1 not.
set -eu
cnf=/var/lib/mysql/.my-healthcheck.cnf
q() { mariadb --defaults-extra-file="$cnf" -N -s -e "$1" 2>/dev/null; }
[ $# -gt 0 ] || set -- --connect
for opt in "$@"; do
  case "$opt" in
    --connect) q "SELECT 1" >/dev/null || exit 1 ;;
    --innodb_initialized)
      [ "$(q "SELECT 1 FROM information_schema.ENGINES WHERE engine='InnoDB' AND support IN ('YES','DEFAULT')")" = 1 ] || exit 1 ;;
    --su-mysql|--defaults-file=*|--no-defaults) ;;
    *) echo "healthcheck.sh: unsupported option $opt" >&2; exit 1 ;;
  esac
done
