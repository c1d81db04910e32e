#!/usr/bin/env bash
# Fleet upgrade benchmark on the real engine, behind berth's own proxy: N demo tenants
# (default 50) go v1 → v2 blue-green in waves. Reports the fleet's wall time against the sum of
# the tenants' health-gate times (start of the new container → gate passed, the part no tool
# can skip), and the latency a client of one tenant sees in a quiet window vs during its own
# switchover (wrk, keep-alive over HTTPS, same run). Usage: scripts/bench-upgrade.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
BATCH=${BATCH:-10}
./scripts/setup-docker.sh >/dev/null
./scripts/build-images.sh >/dev/null
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
grep -q ' b001.apps.test$' /etc/hosts || echo '127.0.0.1 b001.apps.test' >> /etc/hosts
cargo build --release -q
B=$PWD/target/release/berth
W=$(mktemp -d /tmp/berth-bench-up.XXXX)
NS=bbu
cleanup() {
  [ -f "$W/agent.pid" ] && kill "$(cat "$W/agent.pid")" 2>/dev/null || true
  docker ps -aq --filter "label=io.berth.namespace=$NS" | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter "label=io.berth.namespace=$NS" | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter "label=io.berth.namespace=$NS" | xargs -r docker volume rm -f >/dev/null
}
trap cleanup EXIT
cleanup
mkdir -p "$W/instances"
cat > "$W/berth.yaml" <<CFG
state_dir: state
templates_dir: $PWD/templates
instances_dir: instances
namespace: $NS
admission: {memory_overcommit: 100, disk_overcommit: 100, cpu_overcommit: 100}  # packed past what admission allows by default
base_domain: apps.test
api: {socket: berth.sock}
network: {subnet_pool: 10.251.0.0/16, subnet_prefix: 28}
ports: {first: 34000, last: 34999}
resync_interval: 5s
plans: {small: {memory: 256m, cpus: 0.5, pids: 200}}
proxy: {http: "127.0.0.1:18180", https: "127.0.0.1:18543"}
CFG
for i in $(seq 1 "$N"); do
  t=$(printf 'b%03d' "$i")
  printf 'tenant: %s\ntemplate: demo\nversion: "1"\nplan: small\n' "$t" > "$W/instances/$t.yaml"
done
berth() { "$B" --config "$W/berth.yaml" "$@"; }
setsid "$B" --config "$W/berth.yaml" serve > "$W/agent.log" 2>&1 &
echo $! > "$W/agent.pid"
for _ in $(seq 100); do berth ls >/dev/null 2>&1 && break; sleep 0.2; done
echo "provisioning $N tenants…" >&2
for _ in $(seq 900); do
  running=$(berth ls -o json | jq '[.[] | select(.phase == "running")] | length')
  [ "$running" -ge "$N" ] && break
  sleep 1
done
[ "$running" -ge "$N" ] || { echo "only $running of $N running" >&2; exit 1; }

lat() { # wrk keep-alive on one tenant for $1 s: "p50 p99 max non2xx errors"
  wrk -t1 -c4 -d"$1s" --latency https://b001.apps.test:18543/ 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^ +50%/ {p50=ms($2)} /^ +99%/ {p99=ms($2)} /Latency/ {max=ms($4)}
    /Non-2xx/ {bad=$5} /Socket errors/ {err=$0}
    END {printf "%.2f %.2f %.2f %d %s", p50, p99, max, bad, (err==""?"none":err)}'
}
quiet=$(lat 10)
# The canary is b001: wrk runs across its switchover.
berth upgrade demo --to 2 --tenants b001 --canary 1 >/dev/null
during=$(lat 10)
for _ in $(seq 120); do [ "$(berth upgrade status -o json | jq -r .status)" = running ] || break; sleep 0.5; done

start=$(date +%s.%N)
berth upgrade demo --to 2 --canary 1 --batch "$BATCH" --wait >/dev/null || true
end=$(date +%s.%N)
berth upgrade status -o json > "$W/status.json"
moved=$(jq '[.tenants[] | select(.phase == "done")] | length' "$W/status.json")
gate_sum=$(jq '[.tenants[].gate_seconds // 0] | add * 10 | round / 10' "$W/status.json")
gate_max=$(jq '[.tenants[].gate_seconds // 0] | max * 100 | round / 100' "$W/status.json")
wall=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b-a}')
waves=$(jq '.waves | length' "$W/status.json")
echo "# $(date -u +%F) $N demo tenants on $(nproc) cores; fleet: canary 1 + batch $BATCH"
echo "fleet upgrade of $((N-1)) tenants ($moved moved) in $waves waves: wall ${wall}s; sum of health-gate times ${gate_sum}s (max ${gate_max}s);" \
  "wall / sum = $(awk -v w="$wall" -v s="$gate_sum" 'BEGIN {printf "%.2f", w/s}')"
echo "client of one tenant (wrk -c4 keep-alive, HTTPS, 10 s each) p50/p99/max ms, non-2xx, socket errors:"
echo "  quiet:            $quiet"
echo "  during switchover: $during"
