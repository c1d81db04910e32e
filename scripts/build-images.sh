#!/usr/bin/env bash
# Builds, without any registry, the images the demo and the tests use:
#   berth/base:bookworm   debootstrap minbase + postgresql-15 + busybox-static (docker import)
#   berth/postgres:15     PostgreSQL server (uid 999), initialised from *_FILE secrets
#   berth/demo:1, :2      busybox httpd app that shows tenant + version and queries its database
#   berth/demo:3          a broken release: its health path fails (for upgrade tests)
#   berth/lamp:bookworm   debootstrap minbase + MariaDB 10.11 + Apache/PHP + WordPress (Debian's)
#   berth/mariadb:10.11   MariaDB server honouring the official `mariadb` image's contract
#                         (MARIADB_*/MYSQL_* variables and their *_FILE forms, /var/lib/mysql,
#                         uid 999, port 3306, healthcheck.sh); the stand-in for `mariadb:*`
#   berth/wordpress:6.1, :6.1-p2, :6.1-broken   WordPress (Apache, port 80) honouring the
#                         official `wordpress` image's contract (WORDPRESS_DB_* and *_FILE,
#                         WORDPRESS_TABLE_PREFIX, WORDPRESS_CONFIG_EXTRA, /var/www/html); :6.1-p2
#                         adds a must-use plugin whose first load creates a table, :6.1-broken
#                         answers 500 everywhere (upgrade tests). Built with `lamp` as argument.
#   berth/osticket:1.17, :1.18, :1.18-broken   with `osticket`: osTicket 1.17.5 / 1.18.1 from its
#                         own release trees on berth/lamp, honouring the `osticket/osticket`
#                         image's contract (MYSQL_*, INSTALL_*, ADMIN_*, SMTP_*, CRON_INTERVAL;
#                         installs itself, runs osTicket's upgrader on an older schema);
#                         :1.18-broken answers 500 everywhere (rollback tests)
#   berth/netguard:bookworm  with `swarm` as argument: minbase + iptables, the egress guard
#                         berth runs on every swarm node
#   berth/swarm-node:bookworm  with `swarm`: Debian's docker.io as a container, the nodes of
#                         the local test swarm (scripts/swarm-nodes.sh)
#   berth/mailrelay:bookworm  with `mail` as argument: Postfix (submission on 587, SASL and
#                         policy answered by berth's agent) + OpenDKIM, the shared mail relay
#   berth/systemd:bookworm  with `systemd` as argument: Debian with systemd as PID 1, where
#                         tests/systemd.rs installs berth's units and runs the agent for real
# An image whose inputs did not change is not rebuilt (label berth.inputs = hash of images/).
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${BERTH_IMAGE_CACHE:-/var/cache/berth-images}
inputs=$( (cat scripts/build-images.sh; find images -type f | sort | xargs cat) | sha256sum | cut -c1-16)

have() { # image name, expected inputs hash
  [ "$(docker image inspect -f '{{index .Config.Labels "berth.inputs"}}' "$1" 2>/dev/null)" = "$2" ]
}

mirror() { # the Debian mirror apt already uses
  local m
  m=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
      | grep -v security | head -n1 | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//; s/ .*//')
  echo "${m:-http://deb.debian.org/debian}"
}

bootstrap() { # dir, log name, packages: a fresh minbase bookworm with them
  rm -rf "$1"; mkdir -p "$1"
  debootstrap --variant=minbase --include="$3" bookworm "$1" "$(mirror)" >"$cache/$2" 2>&1 \
    || { tail -n 20 "$cache/$2" >&2; exit 1; }
}

build_base() {
  have berth/base:bookworm "$inputs" && return 0
  local dir=$cache/rootfs
  if [ ! -x "$dir/usr/lib/postgresql/15/bin/postgres" ]; then
    echo "build-images: debootstrap bookworm from $(mirror) (about a minute)"
    bootstrap "$dir" debootstrap.log postgresql-15,busybox-static
    # Fixed ids so templates can name them; files are chowned to them by berth.
    chroot "$dir" sh -c 'groupmod -g 999 postgres && usermod -u 999 -g 999 postgres' >/dev/null
    chroot "$dir" sh -c 'chown -R 999:999 /var/lib/postgresql /var/run/postgresql /etc/postgresql /var/log/postgresql'
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  fi
  echo "build-images: importing berth/base:bookworm"
  tar -C "$dir" -c . | docker import -c "LABEL berth.inputs=$inputs" - berth/base:bookworm >/dev/null
}

build_from_base() { # tag, context dir, Dockerfile text
  have "$1" "$inputs" && { echo "build-images: $1 is up to date"; return 0; }
  echo "build-images: building $1"
  printf '%s\n' "$3" | DOCKER_BUILDKIT=0 docker build -q --label "berth.inputs=$inputs" -t "$1" -f - "$2" >/dev/null
}

mkdir -p "$cache"
build_base

build_from_base berth/postgres:15 images/postgres "FROM berth/base:bookworm
COPY entrypoint.sh /usr/local/bin/berth-pg-entrypoint
RUN mkdir -p /var/lib/postgresql/data && chown 999:999 /var/lib/postgresql/data && chmod 700 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 999:999
EXPOSE 5432
ENTRYPOINT [\"/usr/local/bin/berth-pg-entrypoint\"]"

for v in 1 2 3; do
  health_fix=""
  # v3 is broken on purpose: its health path answers 500.
  [ "$v" = 3 ] && health_fix='RUN printf "#!/bin/sh\nprintf \"Status: 500\\r\\nContent-Type: text/plain\\r\\n\\r\\nbroken release\\n\"\n" > /www/cgi-bin/health && chmod 755 /www/cgi-bin/health'
  build_from_base "berth/demo:$v" images/demo "FROM berth/base:bookworm
COPY www /www
COPY run-httpd.sh /usr/local/bin/run-httpd
COPY smtp-send /usr/local/bin/smtp-send
RUN echo $v > /etc/demo-version && mkdir -p /etc/demo
$health_fix
USER 65534:65534
EXPOSE 8080
CMD [\"/usr/local/bin/run-httpd\"]"
done
build_systemd() {
  have berth/systemd:bookworm "$inputs" && { echo "build-images: berth/systemd:bookworm is up to date"; return 0; }
  local dir=$cache/sdroot
  if [ ! -x "$dir/lib/systemd/systemd" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    echo "build-images: debootstrap bookworm with systemd (about a minute)"
    debootstrap --variant=minbase \
      --include=systemd,systemd-sysv,dbus,iproute2,e2fsprogs,util-linux,mount,iptables,curl,ca-certificates,procps \
      bookworm "$dir" "$(mirror)" >"$cache/sd-debootstrap.log" 2>&1 \
      || { tail -n 20 "$cache/sd-debootstrap.log" >&2; exit 1; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  fi
  echo "build-images: importing berth/systemd:bookworm"
  tar -C "$dir" -c . | docker import -c "LABEL berth.inputs=$inputs" -c 'ENV container=docker' \
    -c 'CMD ["/sbin/init"]' - berth/systemd:bookworm >/dev/null
}
build_lamp() {
  local dir=$cache/lamproot
  if ! have berth/lamp:bookworm "$inputs"; then
    if [ ! -x "$dir/usr/sbin/mariadbd" ] || [ ! -e "$dir/etc/php/8.2/mods-available/intl.ini" ] || [ ! -x "$dir/usr/bin/msmtp" ]; then
      echo "build-images: debootstrap bookworm with MariaDB, Apache, PHP, msmtp and WordPress (a few minutes)"
      bootstrap "$dir" lamp-debootstrap.log \
        mariadb-server,mariadb-client,apache2,libapache2-mod-php,php-mysql,php-gd,php-xml,php-mbstring,php-curl,php-zip,php-intl,php-apcu,php-imap,msmtp,wordpress,wordpress-theme-twentytwentythree,ca-certificates,curl
      # The official mariadb image's ids: mysql is 999:999.
      chroot "$dir" sh -c 'groupmod -g 999 mysql && usermod -u 999 -g 999 mysql' >/dev/null
      chroot "$dir" sh -c 'chown -R 999:999 /var/lib/mysql /run/mysqld 2>/dev/null; rm -rf /var/lib/mysql/*'
      rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    fi
    echo "build-images: importing berth/lamp:bookworm"
    tar -C "$dir" -c . | docker import -c "LABEL berth.inputs=$inputs" - berth/lamp:bookworm >/dev/null
  fi
  build_from_base berth/mariadb:10.11 images/mariadb "FROM berth/lamp:bookworm
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY healthcheck.sh /usr/local/bin/healthcheck.sh
COPY berth.cnf /etc/mysql/mariadb.conf.d/99-berth.cnf
RUN chmod 755 /usr/local/bin/*.sh && mkdir -p /var/lib/mysql /run/mysqld && chown 999:999 /var/lib/mysql /run/mysqld
EXPOSE 3306
ENTRYPOINT [\"/usr/local/bin/docker-entrypoint.sh\"]
CMD [\"mariadbd\"]"
  for v in 6.1 6.1-p2 6.1-broken; do
    build_from_base "berth/wordpress:$v" images/wordpress "FROM berth/lamp:bookworm
COPY . /berth
RUN chmod 755 /berth/*.sh && /berth/prepare.sh $v
WORKDIR /var/www/html
EXPOSE 80
ENTRYPOINT [\"/berth/docker-entrypoint.sh\"]
CMD [\"apache2-foreground\"]"
  done
}
# osTicket's own release trees (GPL-2.0), from BERTH_OSTICKET_SOURCES or ../shared/apps/osticket
# beside the repository: osTicket-<version>.tar.gz and their SHA256SUMS.
osticket_sources() {
  local d
  for d in "${BERTH_OSTICKET_SOURCES:-}" ../shared/apps/osticket /work/shared/apps/osticket; do
    [ -n "$d" ] && [ -e "$d/SHA256SUMS" ] && { echo "$d"; return 0; }
  done
  echo "build-images: osTicket's release trees not found; set BERTH_OSTICKET_SOURCES to the directory holding osTicket-<version>.tar.gz and SHA256SUMS" >&2
  return 1
}
build_osticket() {
  build_lamp
  local src ctx tag release extra
  src=$(osticket_sources)
  (cd "$src" && sha256sum --quiet -c SHA256SUMS) || { echo "build-images: $src: a release tree does not match SHA256SUMS" >&2; exit 1; }
  local sums
  sums=$(cut -c1-16 < "$src/SHA256SUMS" | tr -d '\n' | sha256sum | cut -c1-8)
  for tag in 1.17:1.17.5 1.18:1.18.1 1.18-broken:1.18.1:broken; do
    release=$(echo "$tag" | cut -d: -f2); extra=$(echo "$tag" | cut -d: -f3); tag=${tag%%:*}
    have "berth/osticket:$tag" "$inputs-$sums" && { echo "build-images: berth/osticket:$tag is up to date"; continue; }
    echo "build-images: building berth/osticket:$tag (osTicket $release)"
    ctx=$(mktemp -d)
    cp images/osticket/* "$ctx/"
    cp "$src/osTicket-$release.tar.gz" "$ctx/"
    printf '%s\n' "FROM berth/lamp:bookworm
COPY . /berth
RUN /berth/prepare.sh $release $extra
WORKDIR /var/www/html
EXPOSE 80
CMD [\"/bin/start.sh\"]" | DOCKER_BUILDKIT=0 docker build -q --label "berth.inputs=$inputs-$sums" -t "berth/osticket:$tag" -f - "$ctx" >/dev/null
    rm -rf "$ctx"
  done
}
build_swarm() {
  if ! have berth/netguard:bookworm "$inputs"; then
    local dir=$cache/guardroot
    if [ ! -x "$dir/usr/sbin/iptables-nft" ]; then
      echo "build-images: debootstrap bookworm with iptables (about a minute)"
      bootstrap "$dir" guard-debootstrap.log iptables
      rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    fi
    echo "build-images: importing berth/netguard:bookworm"
    tar -C "$dir" -c . | docker import -c "LABEL berth.inputs=$inputs" - berth/netguard:bookworm >/dev/null
  fi
  if ! have berth/swarm-node:bookworm "$inputs"; then
    local dir=$cache/noderoot
    if [ ! -x "$dir/usr/sbin/dockerd" ]; then
      echo "build-images: debootstrap bookworm with docker.io (about a minute)"
      bootstrap "$dir" node-debootstrap.log docker.io,iptables,iproute2,ca-certificates,procps
      rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    fi
    echo "build-images: importing berth/swarm-node:bookworm"
    tar -C "$dir" -c . | docker import -c "LABEL berth.inputs=$inputs" \
      -c 'ENTRYPOINT ["/usr/sbin/dockerd"]' - berth/swarm-node:bookworm >/dev/null
  fi
}
build_mail() {
  if ! have berth/mailroot:bookworm "$inputs"; then
    local dir=$cache/mailroot
    if [ ! -x "$dir/usr/sbin/opendkim" ]; then
      echo "build-images: debootstrap bookworm with Postfix and OpenDKIM (about a minute)"
      bootstrap "$dir" mail-debootstrap.log postfix,opendkim,opendkim-tools,libsasl2-modules,ca-certificates
      rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    fi
    echo "build-images: importing berth/mailroot:bookworm"
    tar -C "$dir" -c . | docker import -c "LABEL berth.inputs=$inputs" - berth/mailroot:bookworm >/dev/null
  fi
  build_from_base berth/mailrelay:bookworm images/mailrelay "FROM berth/mailroot:bookworm
COPY prepare.sh entrypoint.sh /usr/local/bin/
RUN /usr/local/bin/prepare.sh
EXPOSE 587
ENTRYPOINT [\"/usr/local/bin/entrypoint.sh\"]"
}
for extra in "$@"; do
  case "$extra" in
    systemd) build_systemd ;;
    lamp) build_lamp ;;
    osticket) build_osticket ;;
    swarm) build_swarm ;;
    mail) build_mail ;;
    *) echo "build-images: unknown image set $extra (systemd, lamp, osticket, swarm, mail)" >&2; exit 2 ;;
  esac
done
echo "build-images: done"
