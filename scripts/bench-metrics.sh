#!/usr/bin/env bash
# Metrics cost with N running instances (default 100) on the real engine: scrape latency of
# /metrics (curl, 50 scrapes), the stats sweep's duration, and the agent's CPU per minute
# with and without a scraper hitting /metrics every second (same agent, same instances); then
# the agent is restarted with BERTH_STATS_SOURCE=engine over the same instances and its sweep
# (one engine stats call per container) is timed beside the kernel reading's.
# Instances use a one-container template (busybox httpd) so 100 fit on a 2-core host.
# Usage: scripts/bench-metrics.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
./scripts/setup-docker.sh >/dev/null
./scripts/build-images.sh >/dev/null
cargo build --release -q
BIN=$PWD/target/release/berth
W=$(mktemp -d /tmp/berth-bench-metrics.XXXX)
mkdir -p "$W/templates/static" "$W/instances"
cat > "$W/templates/static/template.yaml" <<'T'
name: static
description: busybox httpd serving /etc (benchmark filler)
web: {service: app, port: 8080, health_path: /hostname}
services:
  app:
    user: "65534:65534"
    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/etc"]
    read_only: true
versions:
  "1": {images: {app: berth/demo:1}}
T
cat > "$W/berth.yaml" <<C
state_dir: state
templates_dir: templates
instances_dir: instances
namespace: bm
admission: {memory_overcommit: 100, disk_overcommit: 100, cpu_overcommit: 100}  # packed past what admission allows by default
api: {socket: berth.sock}
network: {subnet_pool: 10.230.0.0/16, subnet_prefix: 28}
ports: {first: 40000, last: 40999}
metrics: {listen: 127.0.0.1:19464, interval: 15s}
plans: {tiny: {memory: 32m, cpus: 0.1, pids: 64}}
default_plan: tiny
parallelism: 8
C
for i in $(seq 1 "$N"); do
  printf 'tenant: s%d\ntemplate: static\nversion: "1"\n' "$i" > "$W/instances/s$i.yaml"
done
cleanup() {
  kill "$AGENT" 2>/dev/null || true; wait "$AGENT" 2>/dev/null || true
  docker ps -aq --filter label=io.berth.namespace=bm | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter label=io.berth.namespace=bm | xargs -r docker network rm >/dev/null
}
trap cleanup EXIT
"$BIN" serve --config "$W/berth.yaml" 2>"$W/agent.log" &
AGENT=$!
echo "# $(date -u +%F) $N instances, metrics interval 15s"
start=$(date +%s)
for _ in $(seq 600); do
  up=$(curl -s 127.0.0.1:19464/metrics | grep -c '^berth_instance_up{.*} 1' || true)
  [ "$up" -ge "$N" ] && break
  sleep 2
done
echo "running: $up/$N after $(( $(date +%s) - start )) s"
sleep 20   # one full sweep with everything running
cpu() { curl -s 127.0.0.1:19464/metrics | awk '/^process_cpu_seconds_total/ {print $2}'; }
lat=$(for _ in $(seq 50); do curl -s -o /dev/null -w '%{time_total}\n' 127.0.0.1:19464/metrics; done | sort -n)
p50=$(echo "$lat" | awk 'NR==25 {printf "%.1f", $1*1000}')
p99=$(echo "$lat" | awk 'NR==50 {printf "%.1f", $1*1000}')
m=$(curl -s 127.0.0.1:19464/metrics)
echo "scrape: p50 ${p50} ms, max ${p99} ms (50 scrapes), $(echo "$m" | wc -c) bytes, $(echo "$m" | grep -vc '^#') samples"
echo "sweep: $(echo "$m" | awk '/^berth_stats_sweep_duration_seconds/ {printf "%.2f s", $2}') for $(echo "$m" | grep -c '^berth_container_pids{') containers"
c0=$(cpu); sleep 60; c1=$(cpu)
echo "agent CPU, no scraper:      $(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f s/min (%.1f%% of a core)", b-a, (b-a)/60*100}')"
( for _ in $(seq 60); do curl -s -o /dev/null 127.0.0.1:19464/metrics; sleep 1; done ) &
SCRAPER=$!
c0=$(cpu); sleep 60; c1=$(cpu); wait "$SCRAPER"
echo "agent CPU, scraped every 1s: $(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f s/min (%.1f%% of a core)", b-a, (b-a)/60*100}')"
echo "agent RSS: $(( $(ps -o rss= -p "$AGENT") / 1024 )) MB"
kernel_sweep=$(curl -s 127.0.0.1:19464/metrics | awk '/^berth_stats_sweep_duration_seconds/ {print $2}')
kill "$AGENT"; wait "$AGENT" 2>/dev/null || true
BERTH_STATS_SOURCE=engine "$BIN" serve --config "$W/berth.yaml" 2>>"$W/agent.log" &
AGENT=$!
sleep 40   # the first sweep after start, then most of a second one
engine_sweep=$(curl -s 127.0.0.1:19464/metrics | awk '/^berth_stats_sweep_duration_seconds/ {print $2}')
awk -v k="$kernel_sweep" -v e="$engine_sweep" -v n="$N" \
  'BEGIN {printf "sweep of %d instances: kernel reading %.2f s, engine stats calls %.2f s (%.0fx)\n", n, k, e, e/k}'
