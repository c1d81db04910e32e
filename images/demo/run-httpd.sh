#!/bin/sh
# Runs busybox httpd in the foreground on $PORT (default 8080) serving /www.
exec /bin/busybox httpd -f -v -p "${PORT:-8080}" -h /www
