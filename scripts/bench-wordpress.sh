#!/usr/bin/env bash
# WordPress benchmarks on the real engine, side by side in one run (docs/BENCHMARKS.md):
#  1. `berth add` of a WordPress tenant → first 200 of /wp-admin/install.php through berth's
#     HTTPS edge, against the same two containers (same images, same variables and secret
#     files) started by hand with `docker network create` + `docker run` → first 200 on a
#     published port: with the images present, and with a cold pull from the loopback
#     registry (every name of the images removed first; by hand: `docker pull` twice, then run).
#  2. Backup and restore of that tenant with UPLOAD_MIB MiB of incompressible uploads: time,
#     archive size and the agent's peak RSS (VmHWM), against `mariadb-dump` + `tar` run by hand
#     through `docker exec` on the same data.
# Usage: scripts/bench-wordpress.sh [UPLOAD_MIB=1024]. Needs scripts/build-images.sh lamp.
set -eEuo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
REG=19494
./scripts/setup-docker.sh >/dev/null
./scripts/build-images.sh lamp >/dev/null
command -v docker-registry >/dev/null || { echo "needs Debian's docker-registry" >&2; exit 1; }
cargo build --release --quiet
B="$PWD/target/release/berth"
W=$(mktemp -d /tmp/berth-wpbench.XXXX)
mkdir -p "$W/instances" "$W/registry" "$W/raw"
cat > "$W/registry/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $W/registry/data}}
http: {addr: 127.0.0.1:$REG}
YAML
cat > "$W/berth.yaml" <<YAML
state_dir: state
templates_dir: $PWD/templates
instances_dir: instances
namespace: wpbench
admission: {memory_overcommit: 100, disk_overcommit: 100, cpu_overcommit: 100}  # packed past what admission allows by default
base_domain: bench.test
api: {socket: berth.sock}
network: {subnet_pool: 10.252.0.0/16, subnet_prefix: 28}
ports: {first: 45000, last: 45099}
resync_interval: 30s
proxy: {http: "127.0.0.1:18980", https: "127.0.0.1:18981"}
plans:
  wp: {memory: 1g, cpus: 1, pids: 500}
registry_mirrors: {docker.io: "127.0.0.1:$REG"}
YAML
STAND_INS="berth/mariadb:10.11=mariadb:11.4 berth/wordpress:6.1=wordpress:6.6-apache"
cleanup() {
  [ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null || true
  [ -n "${REGPID:-}" ] && kill "$REGPID" 2>/dev/null || true
  docker ps -aq --filter label=io.berth.namespace=wpbench | xargs -r docker rm -f >/dev/null
  docker ps -aq --filter name='^wpraw' | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter label=io.berth.namespace=wpbench | xargs -r docker network rm >/dev/null
  docker network ls -q --filter name='^wpraw' | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter label=io.berth.namespace=wpbench | xargs -r docker volume rm >/dev/null
  docker volume ls -q --filter name='^wpraw' | xargs -r docker volume rm >/dev/null
  # The stand-ins keep their berth/* names (a cold pull removed them): tag them back.
  for p in $STAND_INS; do docker tag "${p#*=}" "${p%%=*}" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'echo "bench-wordpress: failed at line $LINENO; agent log:" >&2; tail -n 20 "$W/agent.log" >&2' ERR
b() { "$B" --config "$W/berth.yaml" "$@"; }
now() { date +%s%3N; }
ms_since() { echo $(( $(now) - $1 )); }

setsid docker-registry serve "$W/registry/config.yml" >"$W/registry.log" 2>&1 < /dev/null &
REGPID=$!
until curl -fsS -o /dev/null "http://127.0.0.1:$REG/v2/"; do sleep 0.1; done
for p in $STAND_INS; do
  docker tag "${p%%=*}" "127.0.0.1:$REG/library/${p#*=}"
  docker push -q "127.0.0.1:$REG/library/${p#*=}" >/dev/null
  docker tag "${p%%=*}" "${p#*=}"
done

forget_images() { # every name of the stand-ins' images, so the next start pulls for real
  local ids
  ids=$(for p in $STAND_INS; do
           for n in "${p%%=*}" "${p#*=}" "127.0.0.1:$REG/library/${p#*=}"; do
             docker image inspect -f '{{.Id}}' "$n" 2>/dev/null || true
           done
         done | sort -u)
  for i in $ids; do docker image inspect -f '{{join .RepoTags " "}}' "$i" || true; done | tr ' ' '\n' \
    | sort -u | xargs -r docker rmi >/dev/null 2>&1 || true
  docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -E '^berth/(wordpress|lamp|mariadb)' \
    | xargs -r docker rmi >/dev/null 2>&1 || true
}

setsid "$B" --config "$W/berth.yaml" serve >"$W/agent.log" 2>&1 < /dev/null &
AGENT=$!
until b reconcile >/dev/null 2>&1; do sleep 0.1; done
b ca > "$W/ca.pem"

edge_200() { # tenant: first 200 of the installer through the HTTPS edge
  until curl -fsS -o /dev/null --max-time 2 --cacert "$W/ca.pem" \
      --connect-to "$1.bench.test:443:127.0.0.1:18981" "https://$1.bench.test/wp-admin/install.php" 2>/dev/null; do
    sleep 0.05
  done
}

add_berth() { # tenant → ms from `berth add` to the first 200 through the edge
  local t0; t0=$(now)
  b add "$1" --template wordpress --plan wp --set admin_email=ops@example.com >/dev/null
  edge_200 "$1"
  ms_since "$t0"
}

run_raw() { # n pull → ms from the first docker command to the first 200 on the published port
  local n=wpraw$1 port=$((46100 + $1)) d=$W/raw/$1 t0
  mkdir -p "$d"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$d/db_password"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$d/db_root_password"
  mkdir -p "$d/db" "$d/web"; cp "$d"/db_*password "$d/db/"; cp "$d/db_password" "$d/web/"
  chown -R 999:999 "$d/db"; chown -R 33:33 "$d/web"; chmod 400 "$d"/db/* "$d"/web/*
  t0=$(now)
  if [ "$2" = pull ]; then
    docker pull -q "127.0.0.1:$REG/library/mariadb:11.4" >/dev/null
    docker pull -q "127.0.0.1:$REG/library/wordpress:6.6-apache" >/dev/null
    docker tag "127.0.0.1:$REG/library/mariadb:11.4" mariadb:11.4
    docker tag "127.0.0.1:$REG/library/wordpress:6.6-apache" wordpress:6.6-apache
  fi
  docker network create "$n" >/dev/null
  docker run -d --pull never --name "$n-db" --network "$n" --network-alias db \
    --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER --cap-add SETGID --cap-add SETUID \
    --security-opt no-new-privileges --memory 683m --tmpfs /tmp --tmpfs /run/mysqld:rw,nosuid,size=1m,uid=999,gid=999 \
    -v "$d/db:/run/secrets:ro" -v "$n-db:/var/lib/mysql" \
    -e MARIADB_DATABASE=wordpress -e MARIADB_USER=wordpress \
    -e MARIADB_PASSWORD_FILE=/run/secrets/db_password -e MARIADB_ROOT_PASSWORD_FILE=/run/secrets/db_root_password \
    --health-cmd 'healthcheck.sh --connect --innodb_initialized' --health-interval 5s \
    mariadb:11.4 >/dev/null
  until [ "$(docker inspect -f '{{.State.Health.Status}}' "$n-db")" = healthy ]; do sleep 0.1; done
  docker run -d --pull never --name "$n-web" --network "$n" -p "127.0.0.1:$port:80" \
    --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER --cap-add SETGID --cap-add SETUID \
    --cap-add NET_BIND_SERVICE --cap-add KILL --security-opt no-new-privileges --memory 341m --tmpfs /tmp \
    -v "$d/web:/run/secrets:ro" -v "$n-web:/var/www/html" \
    -e WORDPRESS_DB_HOST=db:3306 -e WORDPRESS_DB_NAME=wordpress -e WORDPRESS_DB_USER=wordpress \
    -e WORDPRESS_DB_PASSWORD_FILE=/run/secrets/db_password \
    wordpress:6.6-apache >/dev/null
  until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/wp-admin/install.php" 2>/dev/null; do sleep 0.05; done
  ms_since "$t0"
}

raw_down() { # n: the by-hand containers, network and volumes gone
  docker rm -f "wpraw$1-db" "wpraw$1-web" >/dev/null
  docker network rm "wpraw$1" >/dev/null
  docker volume rm "wpraw$1-db" "wpraw$1-web" >/dev/null
}
berth_down() { # tenant: purged and gone
  b rm "$1" --purge >/dev/null
  while docker ps -aq --filter "label=io.berth.tenant=$1" | grep -q .; do sleep 0.2; done
}

# Cold first, while no container holds the images (an image in use cannot be removed).
echo "== 1. WordPress tenant to first 200, cold pull from the loopback registry"
forget_images
echo "by hand (docker pull + run): $(run_raw 1 pull) ms"
raw_down 1
forget_images
echo "berth add (pull + create): $(add_berth cold) ms"
berth_down cold
echo "== 1b. with the images present"
for i in 2 3; do
  echo "by hand, run $i: $(run_raw "$i" present) ms"
  echo "berth add, run $i: $(add_berth "warm$i") ms"
done

echo "== 2. backup and restore with $MIB MiB of uploads (tenant warm2)"
WEB=wpbench-warm2-web DB=wpbench-warm2-db
docker exec "$WEB" sh -c "mkdir -p /var/www/html/wp-content/uploads/bench && cd /var/www/html/wp-content/uploads/bench && \
  for i in \$(seq 1 $((MIB / 16))); do head -c 16777216 /dev/urandom > f\$i.bin; done && chown -R www-data: ."
hwm() { grep VmHWM "/proc/$AGENT/status" | awk '{print $2}'; }
echo "agent peak RSS before: $(hwm) KiB"
t0=$(now); out=$(b backup warm2); t=$(ms_since "$t0")
id=$(echo "$out" | awk '{print $3}')
size=$(stat -c %s "$W/state/backups/warm2/$id.tar")
echo "berth backup: $t ms, archive $size bytes, agent peak RSS $(hwm) KiB"
t0=$(now); b restore warm2 --from "$id" >/dev/null; t=$(ms_since "$t0")
echo "berth restore (safety backup + restore): $t ms, agent peak RSS $(hwm) KiB"
pw='MYSQL_PWD="$(cat /run/secrets/db_password)"; export MYSQL_PWD'
t0=$(now)
docker exec "$DB" sh -c "$pw; exec mariadb-dump -h 127.0.0.1 -u wordpress --single-transaction --routines --triggers wordpress" > "$W/raw/dump.sql"
docker exec "$WEB" tar -c -f - -C /var/www/html . > "$W/raw/files.tar"
t=$(ms_since "$t0")
echo "by hand backup (mariadb-dump + tar via docker exec): $t ms, $(( $(stat -c %s "$W/raw/dump.sql") + $(stat -c %s "$W/raw/files.tar") )) bytes"
t0=$(now)
docker exec -i "$DB" sh -c "$pw; exec mariadb -h 127.0.0.1 -u wordpress wordpress" < "$W/raw/dump.sql"
docker exec -i "$WEB" tar -x -f - -C /var/www/html < "$W/raw/files.tar"
t=$(ms_since "$t0")
echo "by hand restore (mariadb + tar -x over the old files): $t ms"
