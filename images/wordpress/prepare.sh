#!/bin/sh
# Build time: lays out Debian's WordPress like the official `wordpress` image (sources in
# /usr/src/wordpress, copied into /var/www/html on first start; Apache on :80 as www-data with
# mod_rewrite and .htaccess), then applies this tag's variant ($1).
set -eu
rm -rf /usr/src/wordpress && mkdir -p /usr/src/wordpress
# Debian links wp-content, javascript libraries and config into other places: copy the targets.
cp -aL /usr/share/wordpress/. /usr/src/wordpress/
rm -f /usr/src/wordpress/wp-config.php
mkdir -p /usr/src/wordpress/wp-content/themes /usr/src/wordpress/wp-content/plugins /usr/src/wordpress/wp-content/uploads
for t in /usr/share/wordpress/wp-content/themes/*; do [ -e "$t" ] && cp -aL "$t" /usr/src/wordpress/wp-content/themes/ || true; done
cp /berth/wp-config-docker.php /usr/src/wordpress/wp-config-docker.php
chown -R www-data:www-data /usr/src/wordpress
rm -rf /var/www/html && mkdir -p /var/www/html && chown www-data:www-data /var/www/html
cp /berth/apache-site.conf /etc/apache2/sites-available/000-default.conf
printf 'Listen 80\n' > /etc/apache2/ports.conf
a2enmod -q rewrite >/dev/null
mkdir -p /usr/src/wordpress-extra
case "${1:-}" in
  *-p2) mkdir -p /usr/src/wordpress-extra/mu-plugins && cp /berth/ledger.php /usr/src/wordpress-extra/mu-plugins/ ;;
  *-broken) printf '<?php http_response_code(500); exit("broken release\\n");\n' > /usr/src/wordpress-extra/broken.php ;;
esac
printf '%s\n' "${1:-}" > /usr/src/wordpress-extra/tag
