#!/bin/sh
# Build time: lays osTicket's release tree ($1, e.g. 1.17.5) out as the web root, its config
# file a link into /run/osticket (written at every start), Apache on :80 with mod_rewrite
# (osTicket's API routes) and PHP's mail() through msmtp; $2 = broken makes a release whose
# every request answers 500 (upgrade tests).
set -eu
v=$1
tar -xzf "/berth/osTicket-$v.tar.gz" -C /tmp
rm -rf /var/www/html
mv "/tmp/osTicket-$v" /var/www/html
chown -R root:root /var/www/html
ln -sf /run/osticket/ost-config.php /var/www/html/include/ost-config.php
mkdir -p /usr/local/lib/osticket
cp /berth/install.php /usr/local/lib/osticket/install.php
cp /berth/start.sh /bin/start.sh
chmod 755 /bin/start.sh
cp /berth/apache-site.conf /etc/apache2/sites-available/000-default.conf
printf 'Listen 80\n' > /etc/apache2/ports.conf
a2enmod -q rewrite >/dev/null
for sapi in apache2 cli; do
  printf 'sendmail_path = "/usr/bin/msmtp -C /run/osticket/msmtprc -t -i"\n' > "/etc/php/8.2/$sapi/conf.d/99-berth-osticket.ini"
done
mkdir -p /usr/src/osticket-extra
printf '%s\n' "$v" > /usr/src/osticket-extra/release
if [ "${2:-}" = broken ]; then
  touch /usr/src/osticket-extra/broken
  printf '<?php http_response_code(500); exit("broken release\\n");\n' > /usr/src/osticket-extra/broken.php
fi
rm -rf /berth
