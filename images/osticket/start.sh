#!/bin/sh
# Start command of berth's stand-in for the `osticket/osticket` image. It honours that image's
# documented contract: MYSQL_HOST/_DATABASE/_USER/_PASSWORD/_PREFIX, INSTALL_SECRET/_NAME/
# _EMAIL/_URL, ADMIN_FIRSTNAME/_LASTNAME/_EMAIL/_USERNAME/_PASSWORD, SMTP_HOST/_PORT/_FROM/
# _TLS/_USER/_PASSWORD and CRON_INTERVAL (minutes; 0 turns the image's own cron off). At
# every start it writes include/ost-config.php and the mail settings from the environment,
# installs the help desk into an empty database, runs osTicket's own upgrader when the
# database's schema is older than the code, then runs Apache on :80 as www-data.
set -eu
root=/var/www/html
run=/run/osticket
mkdir -p "$run"
chown root:www-data "$run"
chmod 750 "$run"

# Outgoing mail: PHP's mail() hands messages to msmtp, which sends them to SMTP_HOST.
tls=on
case "${SMTP_TLS:-1}" in 0|off|false|no) tls=off ;; esac
umask 077
{
  echo "defaults"
  echo "tls $tls"
  echo "tls_trust_file ${SMTP_TLS_CERTS:-/etc/ssl/certs/ca-certificates.crt}"
  echo "account default"
  echo "host ${SMTP_HOST:-localhost}"
  echo "port ${SMTP_PORT:-25}"
  echo "from ${SMTP_FROM:-${SMTP_USER:-${INSTALL_EMAIL:-helpdesk@example.com}}}"
  if [ -n "${SMTP_USER:-}" ] && [ "$tls" = off ]; then
    # Asked for a login without TLS (a relay on a private network): msmtp sends a password
    # in the clear only when the method is named.
    echo "auth plain"
    echo "user $SMTP_USER"
    echo "password ${SMTP_PASSWORD:-}"
  elif [ -n "${SMTP_USER:-}" ]; then
    echo "auth on"
    echo "user $SMTP_USER"
    echo "password ${SMTP_PASSWORD:-}"
  else
    echo "auth off"
  fi
} > "$run/msmtprc"
chown www-data:www-data "$run/msmtprc"
umask 022

php /usr/local/lib/osticket/install.php
if [ "$(php /usr/local/lib/osticket/install.php --pending-upgrade)" = yes ]; then
  echo "osticket: the database's schema is older than this release; running osTicket's upgrader"
  (cd "$root" && setpriv --reuid=33 --regid=33 --clear-groups php manage.php upgrade)
fi

interval=${CRON_INTERVAL:-5}
case "$interval" in ''|*[!0-9]*) interval=5 ;; esac
if [ "$interval" -gt 0 ]; then
  (while sleep $((interval * 60)); do
    setpriv --reuid=33 --regid=33 --clear-groups php "$root/api/cron.php" || true
  done) &
fi

if [ -e /usr/src/osticket-extra/broken ]; then
  echo "osticket: this release is broken on purpose: every request answers 500"
  printf 'php_value auto_prepend_file /usr/src/osticket-extra/broken.php\n' > "$run/broken.conf"
else
  : > "$run/broken.conf"
fi

set +u; . /etc/apache2/envvars; set -u
mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR"
rm -f "$APACHE_PID_FILE"
exec apache2 -DFOREGROUND
