#!/usr/bin/env bash
# Swarm mode against single-host mode on this machine, one run, the same steps in each:
#   - `berth add` to the first 200 through the edge, for 3 tenants one after another (empty host);
#   - the idle reconcile pass with N demo tenants (default 20) running;
#   - a fleet upgrade of the N tenants v1 → v2 (blue-green, canary 1, batch 5) while three clients
#     (wrk, keep-alive HTTPS, one tenant each) load the edge: wall time, requests, failures.
# The swarm is three Docker-in-Docker nodes (scripts/swarm-nodes.sh) on the same 2 cores, so
# its figures include three more dockerds; tenants are spread over the nodes by placement.
# Usage: scripts/bench-swarm.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
./scripts/setup-docker.sh >/dev/null
./scripts/build-images.sh swarm >/dev/null
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q
B=$PWD/target/release/berth
W=$(mktemp -d /tmp/berth-bench-swarm.XXXX)
SW=/tmp/berth-bench-swarm-nodes
NS=bsw
for i in 001 002 003 007 013 019; do
  grep -q " b$i.apps.test\$" /etc/hosts || echo "127.0.0.1 b$i.apps.test" >> /etc/hosts
done
stop_agent() {
  [ -f "$W/agent.pid" ] && kill "$(cat "$W/agent.pid")" 2>/dev/null || true
  rm -f "$W/agent.pid"; sleep 1
}
cleanup() {
  stop_agent
  docker ps -aq --filter "label=io.berth.namespace=$NS" | xargs -r docker rm -f >/dev/null || true
  # An endpoint can outlive its container for a moment: try the networks again.
  for _ in 1 2 3; do
    docker network ls -q --filter "label=io.berth.namespace=$NS" | xargs -r docker network rm \
      >/dev/null 2>&1 && break
    sleep 2
  done
  docker volume ls -q --filter "label=io.berth.namespace=$NS" | xargs -r docker volume rm -f >/dev/null || true
  ./scripts/swarm-nodes.sh down "$SW" bsw >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
berth() { "$B" --config "$W/berth.yaml" "$@"; }

# $1: mode name, $2: extra config (the engine section, or nothing)
run() {
  rm -rf "$W/state" "$W/instances"; mkdir -p "$W/instances"
  cat > "$W/berth.yaml" <<CFG
state_dir: state
templates_dir: $PWD/templates
instances_dir: instances
namespace: $NS
admission: {memory_overcommit: 100, disk_overcommit: 100, cpu_overcommit: 100}  # packed past what admission allows by default
base_domain: apps.test
api: {socket: berth.sock}
network: {subnet_pool: 10.252.0.0/16, subnet_prefix: 28}
ports: {first: 35000, last: 35999}
resync_interval: 5s
plans: {small: {memory: 256m, cpus: 0.5, pids: 200}}
proxy: {http: "127.0.0.1:18280", https: "127.0.0.1:18643"}
$2
CFG
  setsid "$B" --config "$W/berth.yaml" serve > "$W/agent-$1.log" 2>&1 &
  echo $! > "$W/agent.pid"
  for _ in $(seq 100); do berth ls >/dev/null 2>&1 && break; sleep 0.2; done
  berth ca > "$W/ca.pem"
  local firsts=()
  for i in 1 2 3; do
    t=$(printf 'b%03d' "$i")
    s=$(date +%s.%N)
    berth add "$t" --template demo --plan small >/dev/null
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$W/ca.pem" \
      "https://$t.apps.test:18643/")" = 200 ]; do sleep 0.05; done
    firsts+=("$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b-a}')")
  done
  for i in $(seq 4 "$N"); do
    t=$(printf 'b%03d' "$i")
    printf 'tenant: %s\ntemplate: demo\nversion: "1"\nplan: small\n' "$t" > "$W/instances/$t.yaml"
  done
  for _ in $(seq 600); do
    running=$(berth ls -o json | jq '[.[] | select(.phase == "running")] | length')
    [ "$running" -ge "$N" ] && break
    sleep 1
  done
  [ "$running" -ge "$N" ] || { echo "[$1] only $running of $N running" >&2; berth ls >&2; exit 1; }
  sleep 10
  local passes=()
  for _ in $(seq 9); do
    passes+=("$(berth reconcile | jq .duration_ms)")
    sleep 1
  done
  idle=$(printf '%s\n' "${passes[@]}" | sort -n | sed -n 5p)
  # Three clients, one tenant each (on three different nodes in swarm mode), for the whole upgrade.
  for t in b007 b013 b019; do
    wrk -t1 -c2 -d600s --timeout 10s https://$t.apps.test:18643/ > "$W/wrk-$1-$t.txt" 2>&1 &
  done
  s=$(date +%s.%N)
  berth upgrade demo --to 2 --canary 1 --batch 5 --wait >/dev/null || true
  wall=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b-a}')
  pkill -INT -f "wrk -t1 -c2 -d600s" || true
  sleep 2
  moved=$(berth upgrade status -o json | jq '[.tenants[] | select(.phase == "done")] | length')
  reqs=0; bad=0
  for f in "$W"/wrk-"$1"-*.txt; do
    r=$(awk '/requests in/ {print $1}' "$f"); reqs=$((reqs + ${r:-0}))
    n=$(awk '/Non-2xx/ {print $5}' "$f"); bad=$((bad + ${n:-0}))
    e=$(awk -F'[ ,]+' '/Socket errors/ {print $5+$7+$9+$11}' "$f"); bad=$((bad + ${e:-0}))
  done
  echo "[$1] add → first 200: ${firsts[*]} s; idle pass p50 ${idle} ms with $N tenants;" \
    "fleet upgrade of $N ($moved moved): wall ${wall}s; under load $reqs requests, $bad failed" \
    "(non-2xx + socket errors); agent RSS $(( $(ps -o rss= -p "$(cat "$W/agent.pid")") / 1024 )) MiB"
  berth ls -o json | jq -r '[.[] | .containers[0].node.name // "this host"] | group_by(.) | map("\(.[0]): \(length)") | join(", ")' \
    | sed "s/^/[$1] tenants per node: /"
  stop_agent
}

echo "# $(date -u +%F) $(nproc) cores; $N demo tenants; wrk -t1 -c2 on three tenants during the upgrade"
run single ""
cleanup
engine=$(./scripts/swarm-nodes.sh up "$SW" bsw 10.231.200.0/24 3 \
  berth/demo:1 berth/demo:2 berth/postgres:15 berth/netguard:bookworm)
run swarm "$engine"
