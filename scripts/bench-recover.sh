#!/usr/bin/env bash
# Whole-host recovery benchmark on the real engine (docs/BENCHMARKS.md "Whole-host recovery"):
# N demo tenants (PostgreSQL + an uploads volume with MIB MiB of random files and 20,000 rows
# each) backed up into a restic repository (a local path); then the host loses its state
# directory, instance files, containers and volumes, and `berth recover` brings them back.
# Side by side in the same run, on the same wiped host:
#  (a) `berth recover --repo bench`: wall time to every tenant running, healthy and holding
#      its data (checked byte-equal), each tenant's own time, the agent's peak RSS;
#  (b) by hand, the parts an operator would need at the least: `restic restore` of the N
#      snapshots (the data alone), and N fresh tenants created at once (provisioning alone,
#      no data).
# Usage: scripts/bench-recover.sh [N=20] [MIB=16]. Needs build-images.sh (demo, postgres).
set -eEuo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
MIB=${2:-16}
./scripts/setup-docker.sh >/dev/null
./scripts/build-images.sh >/dev/null
for c in restic jq; do command -v $c >/dev/null || { echo "needs $c" >&2; exit 1; }; done
cargo build --release --quiet
B="$PWD/target/release/berth"
W=$(mktemp -d /tmp/berth-recbench.XXXX)
mkdir -p "$W/instances" "$W/keys" "$W/templates"
cp -r templates/demo "$W/templates/demo"
# The demo app with an uploads volume (at /var/tmp, which its image makes writable by the app).
python3 - "$W/templates/demo/template.yaml" <<'PY'
import sys
p = sys.argv[1]; t = open(p).read()
deps = "    depends_on:\n      db:\n        condition: service_healthy\n"
assert "volumes:\n  pgdata:\n" in t and t.count(deps) == 1
t = t.replace("volumes:\n  pgdata:\n", "volumes:\n  pgdata:\n  uploads:\n")
t = t.replace(deps, "    volumes:\n      - uploads:/var/tmp\n" + deps)
open(p, "w").write(t)
PY
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/keys/repo.key"; chmod 600 "$W/keys/repo.key"
cat > "$W/berth.yaml" <<YAML
state_dir: state
templates_dir: $W/templates
instances_dir: instances
namespace: recbench
admission: {memory_overcommit: 100, disk_overcommit: 100, cpu_overcommit: 100}  # packed past what admission allows by default
base_domain: bench.test
api: {socket: berth.sock}
network: {subnet_pool: 10.252.0.0/16, subnet_prefix: 28}
resync_interval: 30s
plans:
  small: {memory: 256m, cpus: 0.5, pids: 200, backups: {keep: 2}}
default_plan: small
backup_repositories:
  bench: {url: $W/repo, password_file: keys/repo.key}
YAML
cleanup() {
  [ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null || true
  [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true
  wipe_engine
  rm -rf "$W"
}
wipe_engine() {
  docker ps -aq --filter label=io.berth.namespace=recbench | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter label=io.berth.namespace=recbench | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter label=io.berth.namespace=recbench | xargs -r docker volume rm >/dev/null
}
trap cleanup EXIT
trap 'echo "bench-recover: failed at line $LINENO; agent log:" >&2; tail -n 20 "$W/agent.log" >&2' ERR
b() { "$B" --config "$W/berth.yaml" "$@"; }
r() { RESTIC_PASSWORD_FILE="$W/keys/repo.key" RESTIC_CACHE_DIR="$W/cache" restic -r "$W/repo" "$@"; }
now() { date +%s%3N; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }
start_agent() {
  setsid "$B" --config "$W/berth.yaml" serve >>"$W/agent.log" 2>&1 < /dev/null &
  AGENT=$!
  until b reconcile >/dev/null 2>&1; do sleep 0.1; done
}
stop_agent() { kill "$AGENT"; wait "$AGENT" 2>/dev/null || true; AGENT=; }
running() { b ls -o json | jq '[.[] | select(.phase == "running")] | length'; }
wait_running() {
  local end=$((SECONDS + 900))
  until [ "$(running)" -ge "$1" ]; do
    [ "$SECONDS" -lt "$end" ] || { echo "bench-recover: tenants not running" >&2; b ls >&2; exit 1; }
    sleep 0.5
  done
}
names() { for i in $(seq -w 1 "$N"); do echo "$1$i"; done; }
# A tenant's data: its rows' digest and its volume's files' digests.
holding() {
  docker exec "recbench-$1-db" psql -U app -d app -tA -c "select md5(string_agg(body, ',' order by id)) from notes"
  docker exec "recbench-$1-app" sh -c 'cd /var/tmp && find . -type f | sort | xargs sha256sum' | sha256sum
}

r init -q
start_agent
for t in $(names t); do printf 'tenant: %s\ntemplate: demo\nversion: "1"\n' "$t" > "$W/instances/$t.yaml"; done
wait_running "$N"
for t in $(names t); do
  docker exec "recbench-$t-db" psql -U app -d app -q -c \
    "create table notes(id int primary key, body text); insert into notes select g, md5(g::text || '$t') from generate_series(1, 20000) g;"
  docker exec "recbench-$t-app" sh -c "mkdir -p /var/tmp/up && for i in \$(seq 1 $MIB); do dd if=/dev/urandom of=/var/tmp/up/f\$i bs=1M count=1 2>/dev/null; done"
  b backup "$t" >/dev/null
  holding "$t" > "$W/before-$t"
done
until [ "$(r dump latest /inventory.json --tag berth-inventory 2>/dev/null | jq '.tenants | length')" = "$N" ]; do sleep 1; done
repo_bytes=$(du -sb "$W/repo" | cut -f1)

# The host loses everything but berth.yaml, the repository and its key.
stop_agent
wipe_engine
rm -rf "$W/state" "$W/instances"; mkdir "$W/instances"
start_agent
peak=0
( while kill -0 "$AGENT" 2>/dev/null; do grep VmRSS "/proc/$AGENT/status" | awk '{print $2}'; sleep 0.2; done > "$W/rss" ) &
SAMPLER=$!
t0=$(now)
b recover --repo bench -o json > "$W/recovery.json"
recover_s=$(secs_since "$t0")
kill "$SAMPLER" 2>/dev/null || true; SAMPLER=
peak=$(sort -n "$W/rss" | tail -1)
recovered=$(jq '[.tenants[] | select(.outcome == "recovered")] | length' "$W/recovery.json")
equal=0
for t in $(names t); do holding "$t" | cmp -s - "$W/before-$t" && equal=$((equal + 1)); done
per=$(jq -r '[.tenants[].seconds] | sort | "\(.[length/2|floor]*10|round/10) \(.[-1]*10|round/10)"' "$W/recovery.json")

# By hand: the data alone (restic restore of each tenant's snapshot) ...
t0=$(now)
for id in $(r snapshots --json --tag berth | jq -r '.[].short_id'); do
  r restore -q "$id" --target "$W/by-hand/$id"
done
restic_s=$(secs_since "$t0")
rm -rf "$W/by-hand"
# ... and provisioning alone: N new tenants at once on the same host (no data).
t0=$(now)
for t in $(names n); do printf 'tenant: %s\ntemplate: demo\nversion: "1"\n' "$t" > "$W/instances/$t.yaml"; done
wait_running $((2 * N))
fresh_s=$(secs_since "$t0")

cat <<EOF
whole-host recovery of $N demo tenants ($MIB MiB uploads + 20,000 rows each; repository $((repo_bytes / 1048576)) MiB):
  berth recover:            ${recover_s} s  ($recovered recovered, $equal/$N byte-equal; per tenant p50/max ${per// / / } s; agent peak RSS $((peak / 1024)) MiB)
  by hand, restic restore:  ${restic_s} s  (the $N snapshots, data only)
  by hand, $N fresh tenants: ${fresh_s} s  (provisioning only, no data)
EOF
