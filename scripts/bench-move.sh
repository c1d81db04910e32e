#!/usr/bin/env bash
# Moving a tenant to another host, benchmarked on the real engine (docs/BENCHMARKS.md "Moving a
# tenant to another host"): two agents on this machine (A and B: two state directories,
# namespaces and edges) share a restic repository. Two demo tenants with the same data (MIB MiB
# of random uploads and ROWS rows each) leave A, side by side in one run:
#  (a) mv1 by `berth move mv1 --to <B's API>` while one client sends requests through A's edge
#      one after another: the whole move, the time requests were held, every request's status
#      and time;
#  (b) mv2 by hand, stop-the-world, with B's tenant made beforehand (not counted): pause the app
#      on A, `pg_dump | restic backup --stdin` and the uploads volume `tar | restic backup
#      --stdin`, then `restic dump | psql` and `restic dump | tar -x` into B's tenant: the time
#      from the stop to B holding the data (the tenant's downtime), and the client's requests
#      through A's edge meanwhile.
# Usage: scripts/bench-move.sh [MIB=64] [ROWS=200000]. Needs build-images.sh (demo, postgres).
set -eEuo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-64}
ROWS=${2:-200000}
./scripts/setup-docker.sh >/dev/null
./scripts/build-images.sh >/dev/null
for c in restic jq curl; do command -v $c >/dev/null || { echo "needs $c" >&2; exit 1; }; done
cargo build --release --quiet
BIN="$PWD/target/release/berth"
W=$(mktemp -d /tmp/berth-movebench.XXXX)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/repo.key"; chmod 600 "$W/repo.key"
for h in a b; do
  mkdir -p "$W/$h/instances" "$W/$h/keys" "$W/$h/templates"
  cp -r templates/demo "$W/$h/templates/demo"
  cp "$W/repo.key" "$W/$h/keys/repo.key"
  python3 - "$W/$h/templates/demo/template.yaml" <<'PY'
import sys
p = sys.argv[1]; t = open(p).read()
deps = "    depends_on:\n      db:\n        condition: service_healthy\n"
assert "volumes:\n  pgdata:\n" in t and t.count(deps) == 1
t = t.replace("volumes:\n  pgdata:\n", "volumes:\n  pgdata:\n  uploads:\n")
t = t.replace(deps, "    volumes:\n      - uploads:/var/tmp\n" + deps)
open(p, "w").write(t)
PY
done
config() { # host, namespace, subnet, http, https, extra api line, metrics port
  cat > "$W/$1/berth.yaml" <<YAML
state_dir: state
templates_dir: $W/$1/templates
instances_dir: instances
namespace: $2
admission: {memory_overcommit: 100, disk_overcommit: 100, cpu_overcommit: 100}  # packed past what admission allows by default
base_domain: bench.test
api: {socket: berth.sock$6}
network: {subnet_pool: $3, subnet_prefix: 28}
proxy: {http: "127.0.0.1:$4", https: "127.0.0.1:$5"}
metrics: {listen: "127.0.0.1:$7"}
resync_interval: 30s
plans:
  small: {memory: 512m, cpus: 1, pids: 200, backups: {keep: 3}}
default_plan: small
backup_repositories:
  bench: {url: $W/repo, password_file: keys/repo.key}
YAML
}
config a mva 10.253.0.0/20 18911 18912 "" 18916
config b mvb 10.253.16.0/20 18913 18914 ", tcp: \"127.0.0.1:18915\"" 18917
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for ns in mva mvb; do
    docker ps -aq --filter label=io.berth.namespace=$ns | xargs -r docker rm -f >/dev/null
    docker network ls -q --filter label=io.berth.namespace=$ns | xargs -r docker network rm >/dev/null
    docker volume ls -q --filter label=io.berth.namespace=$ns | xargs -r docker volume rm >/dev/null
  done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'echo "bench-move: failed at line $LINENO; agent logs:" >&2; tail -n 15 "$W"/*/agent.log >&2' ERR
on() { local h=$1; shift; "$BIN" --config "$W/$h/berth.yaml" "$@"; }
r() { RESTIC_PASSWORD_FILE="$W/repo.key" RESTIC_CACHE_DIR="$W/cache" restic -r "$W/repo" -q "$@"; }
now() { date +%s%3N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }
wait_running() { # host tenant
  local end=$((SECONDS + 600))
  until [ "$(on "$1" status "$2" -o json 2>/dev/null | jq -r .phase)" = running ]; do
    [ "$SECONDS" -lt "$end" ] || { echo "bench-move: $2 not running on $1" >&2; exit 1; }
    sleep 0.5
  done
}
# One client, one request after another through A's edge, each "ms-since-epoch status seconds".
load() { # tenant, out file
  while [ ! -e "$W/stop-$1" ]; do
    printf '%s ' "$(now)"
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 60 --cacert "$W/a/ca.pem" \
      --resolve "$1.bench.test:18912:127.0.0.1" "https://$1.bench.test:18912/" || true
    sleep 0.02
  done > "$2"
}
summary() { # file: requests, failed, p50/p99/max seconds
  awk '{ n++; if ($2 != "200") f++; print $3 > "/dev/stderr" } END { printf "%d requests, %d failed", n, f }' "$1" 2> "$1.t"
  sort -n "$1.t" | awk '{ a[NR] = $1 } END { printf ", p50 %.3f s, p99 %.3f s, max %.3f s", a[int(NR*0.5)+1], a[int(NR*0.99)+1], a[NR] }'
}

r init
for h in a b; do
  setsid "$BIN" --config "$W/$h/berth.yaml" serve >>"$W/$h/agent.log" 2>&1 < /dev/null &
  PIDS+=($!)
done
until on a reconcile >/dev/null 2>&1 && on b reconcile >/dev/null 2>&1; do sleep 0.2; done
on a ca > "$W/a/ca.pem"
on b token create --role operator --expires 1h > "$W/b.token"; chmod 600 "$W/b.token"
for t in mv1 mv2; do printf 'tenant: %s\ntemplate: demo\nversion: "1"\n' "$t" > "$W/a/instances/$t.yaml"; done
printf 'tenant: mv2\ntemplate: demo\nversion: "1"\n' > "$W/b/instances/mv2.yaml"
for t in mv1 mv2; do wait_running a $t; done
wait_running b mv2
for t in mv1 mv2; do
  docker exec "mva-$t-db" psql -U app -d app -q -c \
    "create table notes(id int primary key, body text); insert into notes select g, md5(g::text) from generate_series(1, $ROWS) g;"
  docker exec "mva-$t-app" sh -c "mkdir -p /var/tmp/up && for i in \$(seq 1 $MIB); do dd if=/dev/urandom of=/var/tmp/up/f\$i bs=1M count=1 2>/dev/null; done"
done
digest() { # host-namespace tenant
  docker exec "$1-$2-db" psql -U app -d app -tA -c "select count(*), md5(string_agg(body, ',' order by id)) from notes"
  docker exec "$1-$2-app" sh -c 'cd /var/tmp && find . -type f | sort | xargs sha256sum' | sha256sum
}
digest mva mv1 > "$W/before-mv1"
digest mva mv2 > "$W/before-mv2"

# (a) berth move, under load.
load mv1 "$W/load-move" & LOADER=$!
sleep 2
t0=$(now)
on a move mv1 --to http://127.0.0.1:18915 --repo bench --to-token-file "$W/b.token" -o json > "$W/move.json"
t1=$(now)
sleep 3; touch "$W/stop-mv1"; wait $LOADER
digest mvb mv1 | cmp -s - "$W/before-mv1" && move_equal=yes || move_equal=NO
held=$(jq -r '.held_seconds * 10 | round / 10' "$W/move.json")
during_move=$(awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b' "$W/load-move" > "$W/load-move.in"; summary "$W/load-move.in")
all_move=$(summary "$W/load-move")

# (b) by hand, stop-the-world, under the same load.
load mv2 "$W/load-hand" & LOADER=$!
sleep 2
t0=$(now)
docker pause mva-mv2-app >/dev/null  # writes stop (a berth stop would stop its database too)
docker exec mva-mv2-db pg_dump -U app app | r backup --stdin --stdin-filename mv2.sql --tag by-hand
docker run --rm --entrypoint tar -v mva-mv2-uploads:/v berth/demo:1 -C /v -c up | r backup --stdin --stdin-filename up.tar --tag by-hand
docker exec mvb-mv2-db psql -U app -d app -q -c "drop table if exists notes"
r dump --tag by-hand --path /mv2.sql latest /mv2.sql | docker exec -i mvb-mv2-db psql -U app -d app -q >/dev/null
r dump --tag by-hand --path /up.tar latest /up.tar | docker exec -i mvb-mv2-app tar -C /var/tmp -x
t1=$(now)
sleep 3; touch "$W/stop-mv2"; wait $LOADER
docker unpause mva-mv2-app >/dev/null
digest mvb mv2 | cmp -s - "$W/before-mv2" && hand_equal=yes || hand_equal=NO
during_hand=$(awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b' "$W/load-hand" > "$W/load-hand.in"; summary "$W/load-hand.in")

repo_mib=$(du -sm "$W/repo" | cut -f1)
cat <<EOF
moving a demo tenant ($MIB MiB uploads + $ROWS rows) from A to B, one client through A's edge:
  berth move:             $(jq -r '.seconds * 10 | round / 10' "$W/move.json") s command to forwarding, requests held ${held} s, data byte-equal: $move_equal
    during the move:      $during_move
    whole run (5 s more): $all_move
  by hand, stop-the-world: $(secs "$t0" "$t1") s from the stop to B holding the data (the tenant down all along), byte-equal: $hand_equal
    during it:            $during_hand
  repository: $repo_mib MiB
EOF
