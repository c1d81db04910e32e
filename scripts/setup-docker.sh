#!/usr/bin/env bash
# Installs Debian's docker.io (and the image-building tools) and starts dockerd in the background
# when no engine answers. Idempotent: does nothing that is already done.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v pebble >/dev/null 2>&1 || need+=(pebble)
# e2fsprogs for per-tenant disk images (usually present already).
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup-docker: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

echo "setup-docker: starting dockerd"
mkdir -p /etc/docker /var/log
# live-restore keeps tenants running while dockerd restarts; rotation caps the engine's own defaults.
if [ ! -f /etc/docker/daemon.json ]; then
  cat > /etc/docker/daemon.json <<'JSON'
{
  "live-restore": true,
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "3"}
}
JSON
fi
setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "setup-docker: dockerd is up"
    exit 0
  fi
  sleep 1
done
echo "setup-docker: dockerd did not come up; last log lines:" >&2
tail -n 30 /var/log/dockerd.log >&2
exit 1
