#!/bin/sh
# Entrypoint of berth's stand-in for the official `wordpress:*-apache` image: on first start it
# copies WordPress into /var/www/html (when no WordPress is there) and writes wp-config.php from
# the environment (WORDPRESS_DB_HOST/_USER/_PASSWORD/_NAME, WORDPRESS_TABLE_PREFIX,
# WORDPRESS_CONFIG_EXTRA, each also as *_FILE), then runs Apache in the foreground. Files
# from the release (core, must-use plugins) are refreshed on every start, as an image upgrade
# of the official image does for core when the volume holds an older version.
set -eu
if [ "$1" = apache2-foreground ]; then
  cd /var/www/html
  user=www-data; group=www-data
  tag=$(cat /usr/src/wordpress-extra/tag 2>/dev/null || true)
  if [ ! -e index.php ] || [ ! -e wp-includes/version.php ] || [ "$(cat .berth-release 2>/dev/null)" != "$tag" ]; then
    echo "entrypoint: installing WordPress ($tag) into $PWD"
    # Core files from the release; wp-content (themes, plugins, uploads) is the site's own.
    tar -C /usr/src/wordpress --exclude=./wp-content -c . | tar -x -f -
    [ -d wp-content ] || cp -a /usr/src/wordpress/wp-content .
    for th in /usr/src/wordpress/wp-content/themes/*; do
      [ -e "wp-content/themes/$(basename "$th")" ] || cp -a "$th" wp-content/themes/
    done
    rm -rf wp-content/mu-plugins
    if [ -d /usr/src/wordpress-extra/mu-plugins ]; then cp -a /usr/src/wordpress-extra/mu-plugins wp-content/; fi
    rm -f berth-broken.php
    printf '%s\n' "$tag" > .berth-release
    chown -R "$user:$group" .
  fi
  if [ ! -s wp-config.php ] && env | grep -q '^WORDPRESS_'; then
    awk '
      /put your unique phrase here/ {
        cmd = "head -c1m /dev/urandom | sha1sum | cut -d\\  -f1"
        cmd | getline str; close(cmd)
        gsub("put your unique phrase here", str)
      }
      { print }
    ' /usr/src/wordpress/wp-config-docker.php > wp-config.php
    chown "$user:$group" wp-config.php
  fi
  if [ -e /usr/src/wordpress-extra/broken.php ]; then
    # The broken release: every request answers 500.
    cp /usr/src/wordpress-extra/broken.php berth-broken.php
    printf 'php_value auto_prepend_file /var/www/html/berth-broken.php\n' > .htaccess
  elif [ -e .htaccess ] && grep -q berth-broken .htaccess; then
    rm -f .htaccess
  fi
  set +u; . /etc/apache2/envvars; set -u
  mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR"
  rm -f "$APACHE_PID_FILE"
  exec apache2 -DFOREGROUND
fi
exec "$@"
