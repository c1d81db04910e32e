#!/bin/sh
# berth's mail relay: OpenDKIM (signing) in the background, Postfix in the foreground.
# BERTH_MAIL_HOSTNAME   the relay's name in HELO and Received headers
# BERTH_MAIL_RELAYHOST  [host]:port of the smarthost, empty for direct delivery (MX lookups)
# BERTH_MAIL_MAX_SIZE   the largest message any plan allows (bytes); per-tenant limits are
#                       berth's (milter)
# /etc/berth-mail/smarthost_auth (optional, mounted): "[host]:port user:password" (texthash)
set -eu
cp -a /etc/postfix.dist/. /etc/postfix/
set -- "myhostname=${BERTH_MAIL_HOSTNAME:-relay.localdomain}" \
  "relayhost=${BERTH_MAIL_RELAYHOST:-}" \
  "message_size_limit=${BERTH_MAIL_MAX_SIZE:-26214400}"
if [ -s /etc/berth-mail/smarthost_auth ]; then
  set -- "$@" 'smtp_sasl_auth_enable=yes' \
    'smtp_sasl_password_maps=texthash:/etc/berth-mail/smarthost_auth'
  [ "${BERTH_MAIL_SMARTHOST_TLS:-may}" = required ] && set -- "$@" 'smtp_tls_security_level=encrypt'
fi
postconf -e "$@"
chown postfix:postfix /var/lib/postfix && chmod 700 /var/lib/postfix
mkdir -p /run/opendkim && chown opendkim:opendkim /run/opendkim && chmod 750 /run/opendkim
[ -e /etc/berth-mail/dkim/KeyTable ] || { echo "relay: no DKIM tables mounted" >&2; exit 1; }
opendkim -x /etc/opendkim.conf
for i in $(seq 50); do [ -S /run/opendkim/opendkim.sock ] && break; sleep 0.1; done
exec postfix start-fg
