#!/bin/sh
# The demo app's home page: tenant, site title and the image's version.
. /etc/demo/site.conf
version=$(cat /etc/demo-version)
printf 'Content-Type: text/html\r\n\r\n'
printf '<!doctype html><html><head><title>%s</title></head>' "$TITLE"
printf '<body style="background:%s"><h1>%s</h1><p>tenant=%s version=%s</p></body></html>\n' \
  "$COLOR" "$TITLE" "$TENANT" "$version"
