#!/bin/sh
# Run once at image build: Debian's Postfix made into a submission-only relay that keeps no
# state outside its queue volume. Per-run settings (hostname, smarthost, size) are applied by
# the entrypoint; tenant policy lives in berth's agent (milter and SASL sockets).
set -eu
# Fixed ids: berth chowns DKIM keys to opendkim (990) on the host; the queue belongs to postfix.
groupmod -g 990 opendkim && usermod -u 990 -g 990 opendkim
usermod -a -G opendkim postfix
# No chroot (the sockets berth serves are outside the queue directory), no local delivery,
# no port 25 listener: 587 only, with SASL required (berth's agent answers the SASL socket).
# Clients are tenant containers on private bridges: no reverse DNS lookup of them. Each
# tenant's containers are their own clients (addresses on its own network), held to 10
# connections at once, 120 a minute and 60 logins a minute (anvil, no exceptions), among 200
# smtpd processes: one tenant holding all it may leaves the others sending.
postconf -F '*/*/chroot = n'
postconf -MX smtp/inet
postconf -M '587/inet=587 inet n - n - - smtpd'
postconf -M 'postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd'
postconf -MX pickup/unix local/unix virtual/unix lmtp/unix
postconf -e \
  'compatibility_level=3.6' \
  'mydestination=' 'local_recipient_maps=' 'local_transport=error:local delivery is disabled' \
  'alias_maps=' 'alias_database=' 'inet_protocols=ipv4' 'inet_interfaces=all' \
  'mynetworks=127.0.0.0/8' \
  'smtpd_sasl_auth_enable=yes' 'smtpd_sasl_type=dovecot' \
  'smtpd_sasl_path=/run/berth-mail/auth.sock' 'smtpd_sasl_security_options=noanonymous' \
  'broken_sasl_auth_clients=yes' \
  'smtpd_client_restrictions=' \
  'smtpd_relay_restrictions=permit_sasl_authenticated, reject' \
  'smtpd_recipient_restrictions=permit_sasl_authenticated, reject' \
  'smtpd_milters=unix:/run/berth-mail/milter.sock, local:/run/opendkim/opendkim.sock' \
  'non_smtpd_milters=' 'milter_default_action=tempfail' 'milter_protocol=6' \
  'smtpd_tls_security_level=none' 'smtp_tls_security_level=may' \
  'smtp_sasl_security_options=noanonymous' 'smtp_sasl_tls_security_options=noanonymous' \
  'maillog_file=/dev/stdout' 'smtpd_banner=$myhostname ESMTP' \
  'bounce_queue_lifetime=1d' 'maximal_queue_lifetime=3d' \
  'smtp_address_preference=ipv4' 'disable_vrfy_command=yes' \
  'smtpd_peername_lookup=no' \
  'default_process_limit=200' 'smtpd_client_event_limit_exceptions=' \
  'smtpd_client_connection_count_limit=10' 'smtpd_client_connection_rate_limit=120' \
  'smtpd_client_auth_rate_limit=60'
# The pristine config; the entrypoint copies it onto the tmpfs at /etc/postfix.
cp -a /etc/postfix /etc/postfix.dist
cat > /etc/opendkim.conf <<'CONF'
Syslog no
Mode s
Socket local:/run/opendkim/opendkim.sock
UMask 007
UserID opendkim:opendkim
PidFile /run/opendkim/opendkim.pid
Canonicalization relaxed/simple
OversignHeaders From
KeyTable file:/etc/berth-mail/dkim/KeyTable
SigningTable refile:/etc/berth-mail/dkim/SigningTable
CONF
rm -rf /var/spool/postfix/* /var/lib/postfix/*
