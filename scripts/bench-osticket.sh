#!/usr/bin/env bash
# osTicket benchmarks on the real engine, side by side in one run (docs/BENCHMARKS.md, issue 32):
#  1. `berth add` of an osTicket tenant → first 200 of /scp/login.php through berth's HTTPS edge
#     (the help desk installed by its image's first start), against the same two containers
#     (same images, variables and secret files) started by hand → first 200 on a published
#     port: with the images present, and with a cold pull from the loopback registry.
#  2. Backup and restore of that tenant with ATT_MIB MiB of attachments, kept as osTicket keeps
#     them (ost_file_chunk rows in its database), against `mariadb-dump` and `mariadb` run by
#     hand through `docker exec` on the same data (osTicket has no volume besides the database).
#  3. A fleet upgrade 1.17 → 1.18 (osTicket's own migration at start) of TENANTS tenants in
#     waves, against the same steps by hand for one tenant (dump, stop, run the new image,
#     first 200).
# Usage: scripts/bench-osticket.sh [ATT_MIB=500] [TENANTS=10]. Needs build-images.sh osticket.
set -eEuo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-500}
N=${2:-10}
REG=19495
./scripts/setup-docker.sh >/dev/null
./scripts/build-images.sh osticket >/dev/null
command -v docker-registry >/dev/null || { echo "needs Debian's docker-registry" >&2; exit 1; }
cargo build --release --quiet
B="$PWD/target/release/berth"
W=$(mktemp -d /tmp/berth-ostbench.XXXX)
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
namespace: ostbench
admission: {memory_overcommit: 100, disk_overcommit: 100, cpu_overcommit: 100}  # packed past what admission allows by default
base_domain: bench.test
api: {socket: berth.sock}
network: {subnet_pool: 10.253.0.0/16, subnet_prefix: 28}
ports: {first: 45200, last: 45299}
resync_interval: 30s
proxy: {http: "127.0.0.1:18982", https: "127.0.0.1:18983"}
plans:
  desk: {memory: 1g, cpus: 1, pids: 500}
registry_mirrors: {docker.io: "127.0.0.1:$REG"}
YAML
STAND_INS="berth/mariadb:10.11=library/mariadb:11.4 berth/osticket:1.17=osticket/osticket:1.17 berth/osticket:1.18=osticket/osticket:1.18"
cleanup() {
  [ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null || true
  [ -n "${REGPID:-}" ] && kill "$REGPID" 2>/dev/null || true
  docker ps -aq --filter label=io.berth.namespace=ostbench | xargs -r docker rm -f >/dev/null
  docker ps -aq --filter name='^ostraw' | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter label=io.berth.namespace=ostbench | xargs -r docker network rm >/dev/null
  docker network ls -q --filter name='^ostraw' | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter label=io.berth.namespace=ostbench | xargs -r docker volume rm >/dev/null
  docker volume ls -q --filter name='^ostraw' | xargs -r docker volume rm >/dev/null
  # The stand-ins keep their berth/* names (a cold pull removed them): tag them back.
  for p in $STAND_INS; do docker tag "${p#*=}" "${p%%=*}" 2>/dev/null \
    || docker tag "127.0.0.1:$REG/${p#*=}" "${p%%=*}" 2>/dev/null || true; done
  rm -rf "$W"
  # A cold pull removed every berth/* image it shares layers with: build them back.
  ./scripts/build-images.sh lamp osticket >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'echo "bench-osticket: failed at line $LINENO; agent log:" >&2; tail -n 20 "$W/agent.log" >&2' ERR
b() { "$B" --config "$W/berth.yaml" "$@"; }
now() { date +%s%3N; }
ms_since() { echo $(( $(now) - $1 )); }
short() { echo "${1#library/}"; }

setsid docker-registry serve "$W/registry/config.yml" >"$W/registry.log" 2>&1 < /dev/null &
REGPID=$!
until curl -fsS -o /dev/null "http://127.0.0.1:$REG/v2/"; do sleep 0.1; done
for p in $STAND_INS; do
  docker tag "${p%%=*}" "127.0.0.1:$REG/${p#*=}"
  docker push -q "127.0.0.1:$REG/${p#*=}" >/dev/null
  docker tag "${p%%=*}" "$(short "${p#*=}")"
done

forget_images() { # every name of the stand-ins' images, so the next start pulls for real
  local ids
  ids=$(for p in $STAND_INS; do
           for n in "${p%%=*}" "$(short "${p#*=}")" "127.0.0.1:$REG/${p#*=}"; do
             docker image inspect -f '{{.Id}}' "$n" 2>/dev/null || true
           done
         done | sort -u)
  for i in $ids; do docker image inspect -f '{{join .RepoTags " "}}' "$i" || true; done | tr ' ' '\n' \
    | sort -u | xargs -r docker rmi >/dev/null 2>&1 || true
  docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -E '^berth/(osticket|lamp|mariadb|wordpress)' \
    | xargs -r docker rmi >/dev/null 2>&1 || true
}

setsid "$B" --config "$W/berth.yaml" serve >"$W/agent.log" 2>&1 < /dev/null &
AGENT=$!
until b reconcile >/dev/null 2>&1; do sleep 0.1; done
b ca > "$W/ca.pem"

edge_200() { # tenant: first 200 of the staff login through the HTTPS edge
  until curl -fsS -o /dev/null --max-time 2 --cacert "$W/ca.pem" \
      --connect-to "$1.bench.test:443:127.0.0.1:18983" "https://$1.bench.test/scp/login.php" 2>/dev/null; do
    sleep 0.05
  done
}

add_berth() { # tenant [version] → ms from `berth add` to the first 200 through the edge
  local t0; t0=$(now)
  b add "$1" --template osticket --plan desk --set admin_email=agent@example.com \
    ${2:+--version "$2"} >/dev/null
  edge_200 "$1"
  ms_since "$t0"
}

secret() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

run_raw() { # n pull|present [version] → ms from the first docker command to the first 200
  local n=ostraw$1 port=$((46200 + $1)) d=$W/raw/$1 v=${3:-1.18} t0
  mkdir -p "$d/db" "$d/web"
  secret 32 > "$d/db/db_password"; secret 32 > "$d/db/db_root_password"
  cp "$d/db/db_password" "$d/web/"; secret 32 > "$d/web/install_secret"; secret 18 > "$d/web/admin_password"
  chown -R 999:999 "$d/db"; chmod 400 "$d"/db/* "$d"/web/*
  t0=$(now)
  if [ "$2" = pull ]; then
    docker pull -q "127.0.0.1:$REG/library/mariadb:11.4" >/dev/null
    docker pull -q "127.0.0.1:$REG/osticket/osticket:$v" >/dev/null
    docker tag "127.0.0.1:$REG/library/mariadb:11.4" mariadb:11.4
    docker tag "127.0.0.1:$REG/osticket/osticket:$v" "osticket/osticket:$v"
  fi
  docker network create "$n" >/dev/null
  docker run -d --pull never --name "$n-db" --network "$n" --network-alias db \
    --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER --cap-add SETGID --cap-add SETUID \
    --security-opt no-new-privileges --memory 683m --tmpfs /tmp --tmpfs /run/mysqld:rw,nosuid,size=1m,uid=999,gid=999 \
    -v "$d/db:/run/secrets:ro" -v "$n-db:/var/lib/mysql" \
    -e MARIADB_DATABASE=osticket -e MARIADB_USER=osticket \
    -e MARIADB_PASSWORD_FILE=/run/secrets/db_password -e MARIADB_ROOT_PASSWORD_FILE=/run/secrets/db_root_password \
    --health-cmd 'healthcheck.sh --connect --innodb_initialized' --health-interval 5s \
    mariadb:11.4 >/dev/null
  until [ "$(docker inspect -f '{{.State.Health.Status}}' "$n-db")" = healthy ]; do sleep 0.1; done
  raw_web "$1" "$v"
  until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/scp/login.php" 2>/dev/null; do sleep 0.05; done
  ms_since "$t0"
}

raw_web() { # n version: the by-hand web container
  local n=ostraw$1 port=$((46200 + $1)) d=$W/raw/$1
  docker run -d --pull never --name "$n-web" --network "$n" -p "127.0.0.1:$port:80" \
    --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER --cap-add SETGID --cap-add SETUID \
    --cap-add NET_BIND_SERVICE --cap-add KILL --security-opt no-new-privileges --memory 341m --read-only \
    --tmpfs /tmp --tmpfs /run/osticket --tmpfs /run/apache2 --tmpfs /run/lock --tmpfs /var/log/apache2 \
    --tmpfs /var/lib/php/sessions -v "$d/web:/run/secrets:ro" \
    -e MYSQL_HOST=db -e MYSQL_DATABASE=osticket -e MYSQL_USER=osticket -e INSTALL_NAME="Help desk" \
    -e INSTALL_EMAIL=helpdesk@raw.test -e ADMIN_EMAIL=agent@example.com -e ADMIN_USERNAME=ostadmin \
    -e INSTALL_URL=https://raw.test -e CRON_INTERVAL=0 -e SMTP_TLS=0 \
    --entrypoint /bin/sh "osticket/osticket:$2" -c \
    'MYSQL_PASSWORD="$(cat /run/secrets/db_password)" INSTALL_SECRET="$(cat /run/secrets/install_secret)" ADMIN_PASSWORD="$(cat /run/secrets/admin_password)" exec /bin/start.sh' >/dev/null
}

raw_down() { # n: the by-hand containers, network and volume gone
  docker rm -f "ostraw$1-db" "ostraw$1-web" >/dev/null
  docker network rm "ostraw$1" >/dev/null
  docker volume rm "ostraw$1-db" >/dev/null
}
berth_down() { # tenant: purged and gone
  b rm "$1" --purge >/dev/null
  while docker ps -aq --filter "label=io.berth.tenant=$1" | grep -q .; do sleep 0.2; done
}

echo "== 1. osTicket tenant to first 200 (installed), cold pull from the loopback registry"
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
raw_down 2

echo "== 2. backup and restore with $MIB MiB of attachments (tenant warm2)"
DB=ostbench-warm2-db
pw='MYSQL_PWD="$(cat /run/secrets/db_password)"; export MYSQL_PWD'
as_ost() { docker exec -i "$1" sh -c "$pw; exec mariadb -h 127.0.0.1 -u osticket osticket $2"; }
chunks=$((MIB * 4))
as_ost "$DB" "" <<SQL
INSERT INTO ost_file (ft, bk, type, size, \`key\`, signature, name, created)
  SELECT 'T', 'D', 'application/octet-stream', 4 * 262144, CONCAT('bench', seq), CONCAT('bench', seq),
         CONCAT('bench-', seq, '.bin'), NOW() FROM seq_1_to_$((chunks / 4));
INSERT INTO ost_file_chunk (file_id, chunk_id, filedata)
  SELECT f.id, c.seq, REPEAT(RANDOM_BYTES(1024), 256) FROM ost_file f JOIN seq_0_to_3 c
  WHERE f.name LIKE 'bench-%';
SQL
echo "attachments: $(as_ost "$DB" "-N -e 'SELECT ROUND(SUM(LENGTH(filedata)) / 1048576) FROM ost_file_chunk'") MiB in ost_file_chunk"
hwm() { grep VmHWM "/proc/$AGENT/status" | awk '{print $2}'; }
echo "agent peak RSS before: $(hwm) KiB"
t0=$(now); out=$(b backup warm2); t=$(ms_since "$t0")
id=$(echo "$out" | awk '{print $3}')
size=$(stat -c %s "$W/state/backups/warm2/$id.tar")
echo "berth backup: $t ms, archive $size bytes, agent peak RSS $(hwm) KiB"
t0=$(now); b restore warm2 --from "$id" >/dev/null; t=$(ms_since "$t0")
echo "berth restore (safety backup + staged load + switch): $t ms, agent peak RSS $(hwm) KiB"
t0=$(now)
docker exec "$DB" sh -c "$pw; exec mariadb-dump -h 127.0.0.1 -u osticket --single-transaction --routines --triggers --hex-blob osticket" > "$W/raw/dump.sql"
t=$(ms_since "$t0")
echo "by hand backup (mariadb-dump via docker exec): $t ms, $(stat -c %s "$W/raw/dump.sql") bytes"
t0=$(now)
as_ost "$DB" "" < "$W/raw/dump.sql"
t=$(ms_since "$t0")
echo "by hand restore (mariadb < dump, in place): $t ms"
berth_down warm2; berth_down warm3; raw_down 3

echo "== 3. fleet upgrade 1.17 -> 1.18 of $N tenants"
for i in $(seq 1 "$N"); do add_berth "up$i" 1.17 >/dev/null; done
t0=$(now)
b upgrade osticket --to 1.18 --wait >/dev/null
t=$(ms_since "$t0")
echo "berth upgrade of $N tenants: $t ms in all"
b upgrade status -o json | python3 -c '
import json, sys
s = json.load(sys.stdin)
ts = s.get("tenants", {})
secs = sorted(p.get("seconds") or 0 for p in ts.values())
gates = sorted(p.get("gate_seconds") or 0 for p in ts.values())
print("per tenant: median %.1f s, max %.1f s; new container to passed gate: median %.1f s; phases: %s"
      % (secs[len(secs) // 2], secs[-1], gates[len(gates) // 2], sorted({p["phase"] for p in ts.values()})))'
echo "by hand, one tenant (dump, stop the old web, run 1.18, first 200):"
run_raw 4 present 1.17 >/dev/null
t0=$(now)
docker exec ostraw4-db sh -c "$pw; exec mariadb-dump -h 127.0.0.1 -u osticket --single-transaction osticket" > "$W/raw/up.sql"
docker rm -f ostraw4-web >/dev/null
raw_web 4 1.18
until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:46204/scp/login.php" 2>/dev/null; do sleep 0.05; done
echo "by hand upgrade: $(ms_since "$t0") ms"
raw_down 4
