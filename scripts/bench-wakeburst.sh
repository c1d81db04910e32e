#!/usr/bin/env bash
# Where do concurrent first requests to one sleeper wait? (issue 29). One `demo-shared` tenant
# (plan: 0.5 CPU, 128 MiB, sleep_after 20s) behind berth's edge. ROUNDS times: wait until it is
# asleep (container stopped), then C requests at once over HTTPS (new connections, curl); then,
# with it awake, the same C at once again. The wake's own duration is read from the agent's
# log ("waking" to "woke"). If the asleep burst's latency is the wake plus the awake burst's,
# the requests wait in the app (its CPU limit), not in berth.
# Usage: scripts/bench-wakeburst.sh [C=64] [ROUNDS=3]
# BIN=path runs that berth binary (e.g. built from an older commit) instead of this tree's.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-64}
ROUNDS=${2:-3}
./scripts/setup-docker.sh >/dev/null
[ -n "${BIN:-}" ] || cargo build --release --quiet
B="${BIN:-$PWD/target/release/berth}"
W=$(mktemp -d /tmp/berth-burst.XXXX)
cleanup() {
  [ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null && sleep 1 || true
  docker ps -aq --filter label=io.berth.namespace=burst | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter label=io.berth.namespace=burst | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter label=io.berth.namespace=burst | xargs -r docker volume rm >/dev/null
}
trap 'cleanup; rm -rf "$W"' EXIT
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if(i<1)i=1; print a[i]}'; }
mkdir -p "$W/instances"
cat > "$W/berth.yaml" <<YAML
state_dir: state
templates_dir: $PWD/templates
instances_dir: instances
namespace: burst
admission: {memory_overcommit: 100, disk_overcommit: 100, cpu_overcommit: 100}  # packed past what admission allows by default
api: {socket: berth.sock}
network: {subnet_pool: 10.236.0.0/16, subnet_prefix: 28}
ports: {first: 32800, last: 32900}
metrics: {listen: none}
base_domain: apps.test
plans:
  napping: {memory: 128m, cpus: 0.5, pids: 100, sleep_after: 20s}
shared_database: {image: berth/postgres:15, memory: 1g, connection_limit: 5}
proxy: {http: 127.0.0.1:18981, https: 127.0.0.1:18944, max_wakes: 4, client_wakes_per_minute: 100000,
        timeouts: {max_pause: 30s}}
YAML
printf 'tenant: b1\ntemplate: demo-shared\nplan: napping\n' > "$W/instances/b1.yaml"
BERTH_LOG=info setsid "$B" --config "$W/berth.yaml" serve >>"$W/agent.log" 2>&1 < /dev/null &
AGENT=$!
until "$B" --config "$W/berth.yaml" reconcile >/dev/null 2>&1; do sleep 0.2; done
until "$B" --config "$W/berth.yaml" ls -o json | grep -q '"phase": "running"'; do sleep 1; done
"$B" --config "$W/berth.yaml" ca > "$W/ca.pem"
burst() { # file
  seq 1 "$C" | xargs -P "$C" -I{} curl -s -o /dev/null \
    -w '%{http_code} %{time_appconnect} %{time_starttransfer}\n' --max-time 60 \
    --cacert "$W/ca.pem" --resolve "b1.apps.test:18944:127.0.0.1" "https://b1.apps.test:18944/" > "$1"
}
summary() { # file
  local codes p50 p99 tls
  codes=$(cut -d' ' -f1 "$1" | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')
  p50=$(awk '{print $3*1000}' "$1" | pct 50); p99=$(awk '{print $3*1000}' "$1" | pct 99)
  tls=$(awk '{print $2*1000}' "$1" | pct 50)
  echo "${codes}first byte p50 ${p50} ms, p99 ${p99} ms (TLS done p50 ${tls} ms)"
}
for r in $(seq 1 "$ROUNDS"); do
  until "$B" --config "$W/berth.yaml" ls -o json | grep -q '"phase": "asleep"'; do sleep 2; done
  until [ -z "$(docker ps -q --filter label=io.berth.namespace=burst --filter label=io.berth.service=app)" ]; do sleep 1; done
  lines=$(wc -l < "$W/agent.log")
  burst "$W/asleep-$r.txt"
  app=$(docker ps -q --filter label=io.berth.namespace=burst --filter label=io.berth.service=app)
  key=$(docker inspect -f '{{.NetworkSettings.SandboxKey}}' "$app")
  drops=$(nsenter --net="$key" cat /proc/net/netstat | awk '/^TcpExt:/{if(!h){split($0,n);h=1}else{for(i=2;i<=NF;i++)if(n[i]=="ListenOverflows")print $i}}')
  slow=$(awk '$3>1.0' "$W/asleep-$r.txt" | wc -l)
  wake=$(tail -n +"$lines" "$W/agent.log" | grep -E 'waking|woke|awake' | head -4 | tr '\n' ' ' | cut -c1-400)
  sleep 2
  burst "$W/awake-$r.txt"
  echo "[round $r] $C at once to the sleeper: $(summary "$W/asleep-$r.txt")"
  echo "[round $r] $C at once, awake:        $(summary "$W/awake-$r.txt")"
  echo "[round $r] agent log: $wake"
  echo "[round $r] answered after 1 s: $slow of $C; the app's listen queue overflowed $drops times since its start (before the awake burst)"
done
