#!/usr/bin/env bash
# Density on the real engine: N tenants, all awake, nobody visiting. One run per health mode,
# side by side: `exec` (the demo template with Docker exec healthchecks, as berth shipped it
# before: pg_isready every 5 s, wget every 10 s) and `probe` (the shipped template: berth
# probes the health path and the PostgreSQL handshake itself). For each: provisioning rate,
# then after SETTLE seconds, over WINDOW seconds: load average, agent CPU, dockerd + containerd
# (+ shims) CPU, agent RSS, idle reconcile pass.
# The exec intervals are below today's 30 s minimum: the exec run uses the agent binary in
# $EXEC_BIN, built from the commit before probes (89cc4c3), e.g.
#   git worktree add /tmp/berth-exec 89cc4c3 && (cd /tmp/berth-exec && cargo build --release)
#   EXEC_BIN=/tmp/berth-exec/target/release/berth scripts/bench-density.sh 100
# With SLEEP=1 (probe mode), then: all but AWAKE=50 tenants get `sleep_after: 20s`; once they
# sleep, the idle figures again, then WAKES=20 sleeping tenants woken one at a time by an HTTPS
# request through berth's edge (first request → 200), against the same app container started
# by hand (`docker start` of a stopped container → first 200 on its port), interleaved; the
# awake tenants get RATE=20 requests a second (open loop, scripts/rate-load.py) for WINDOW
# seconds with nobody waking, then throughout the wakes.
# MODES may include `base`: today's template run by the agent at BASE_BIN (an older build), so
# an agent change is measured side by side in one run, e.g.
#   BASE_BIN=/tmp/berth-old MODES= scripts/bench-density.sh 300 "base probe"
# Usage: scripts/bench-density.sh [N=100] [MODES="exec probe"] [TEMPLATE=demo]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
MODES=${2:-exec probe}
TEMPLATE=${3:-demo}
# The 1-minute load average needs minutes to forget provisioning.
SETTLE=${SETTLE:-240}
WINDOW=${WINDOW:-60}
./scripts/setup-docker.sh >/dev/null
cargo build --release --quiet
B="$PWD/target/release/berth"
W=$(mktemp -d /tmp/berth-density.XXXX)
cleanup() {
  [ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null && sleep 1 || true
  docker ps -aq --filter label=io.berth.namespace=dens | xargs -r docker rm -f >/dev/null
  docker ps -aq --filter name='^densraw' | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter label=io.berth.namespace=dens | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter label=io.berth.namespace=dens | xargs -r docker volume rm >/dev/null
}
trap 'cleanup; rm -rf "$W"' EXIT
now() { date +%s%3N; }
# CPU seconds (user+system) of the given pids, and of their children already reaped.
cpu() { local t=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15+$16+$17}' "/proc/$p/stat"))); done; echo $t; }
# Busy jiffies of the whole host (everything but idle and iowait).
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
engine_pids() { pgrep -x dockerd; pgrep -x containerd; pgrep -f containerd-shim; pgrep -x docker-proxy; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

idle_figures() { # label binary
  local hz; hz=$(getconf CLK_TCK)
  local a0 e0 h0; a0=$(cpu "$AGENT"); e0=$(cpu $(engine_pids)); h0=$(busy)
  sleep "$WINDOW"
  local a1 e1 h1; a1=$(cpu "$AGENT"); e1=$(cpu $(engine_pids)); h1=$(busy)
  local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
  local passes; passes=$(for _ in 1 2 3 4 5; do "$2" --config "$W/berth.yaml" reconcile | tr -d ' \n' | grep -o '"duration_ms":[0-9.]*' | grep -o '[0-9.]*$'; done | median)
  echo "[$1] over ${WINDOW} s idle: load avg (1/5/15 min) $load; agent CPU $(awk "BEGIN{printf \"%.2f\", ($a1-$a0)/$hz*60/$WINDOW}") s/min; dockerd+containerd+shims CPU $(awk "BEGIN{printf \"%.2f\", ($e1-$e0)/$hz*60/$WINDOW}") s/min (with reaped children: runc); host CPU busy $(awk "BEGIN{printf \"%.0f\", ($h1-$h0)/$hz/$WINDOW/$(nproc)*100}") %; agent RSS $(( $(ps -o rss= -p "$AGENT") / 1024 )) MiB; idle pass p50 ${passes} ms; $(docker ps -q | wc -l) containers running; memory used $(free -m | awk '/Mem:/{print $3}') MiB"
}

pct() { # p → the p-th percentile of stdin
  sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if(i<1)i=1; print a[i]}'
}

sleep_phase() { # binary
  local B=$1 AWAKE=${AWAKE:-50} WAKES=${WAKES:-20}
  for i in $(seq $((AWAKE + 1)) "$N"); do
    printf 'tenant: d%04d\ntemplate: %s\nlimits: {sleep_after: 20s}\n' "$i" "$TEMPLATE" > "$W/instances/d$(printf %04d "$i").yaml"
  done
  local t0; t0=$(now)
  until [ "$("$B" --config "$W/berth.yaml" ls -o json | grep -c '"phase": "asleep"')" -ge $((N - AWAKE)) ]; do sleep 5; done
  echo "[sleep] $((N - AWAKE)) tenants recorded asleep after $(( ($(now) - t0) / 1000 )) s (20 s window); $AWAKE awake"
  # Their containers are stopped by passes after that (Docker takes ~1 s a stop at 1,000
  # networks): the asleep figures wait for the last one.
  local want; want=$(docker ps -q --filter label=io.berth.namespace=dens | wc -l)
  until [ "$(docker ps -q --filter label=io.berth.namespace=dens --filter label=io.berth.service=app | wc -l)" -le "$AWAKE" ]; do sleep 5; done
  echo "[sleep] their containers stopped after $(( ($(now) - t0) / 1000 )) s ($want → $(docker ps -q --filter label=io.berth.namespace=dens | wc -l) running)"
  sleep "$SETTLE"
  idle_figures "asleep" "$B"
  "$B" --config "$W/berth.yaml" ca > "$W/ca.pem"
  local site; site=$(mktemp -d)
  printf "TENANT='raw'\nTITLE='raw'\nCOLOR='#fff'\n" > "$site/site.conf"; chmod 444 "$site/site.conf"
  # The awake tenants under a fixed request rate: alone, then while the wakes below run.
  local awake_hosts=() RATE=${RATE:-20}
  for i in $(seq 1 "$AWAKE"); do awake_hosts+=("$(printf 'd%04d' "$i").apps.test"); done
  local quiet; quiet=$(timeout -s TERM "${WINDOW}" python3 scripts/rate-load.py "$W/ca.pem" 18943 "$RATE" "${awake_hosts[@]}" || true)
  echo "[load] $AWAKE awake tenants, nobody waking, ${WINDOW} s: $quiet"
  python3 scripts/rate-load.py "$W/ca.pem" 18943 "$RATE" "${awake_hosts[@]}" > "$W/load-waking.txt" &
  local LOADER=$!
  local berth_ms=() raw_ms=()
  for k in $(seq 1 "$WAKES"); do
    local t; t=$(printf 'd%04d' $((N - k + 1)))
    local s0; s0=$(now)
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 --cacert "$W/ca.pem" --resolve "$t.apps.test:18943:127.0.0.1" "https://$t.apps.test:18943/")
    berth_ms+=($(( $(now) - s0 )))
    [ "$code" = 200 ] || echo "wake of $t answered $code"
    # By hand as berth does it: a fixed address on its own network, nothing published.
    local r="densraw$k" at="10.248.$k.14:8080"
    docker network create --subnet "10.248.$k.0/28" --ip-range "10.248.$k.0/29" "$r" >/dev/null
    docker run -d --name "$r" --network "$r" --ip "10.248.$k.14" --user 65534:65534 --read-only --tmpfs /tmp \
      -v "$site/site.conf:/etc/demo/site.conf:ro" berth/demo:1 >/dev/null
    until curl -fsS -o /dev/null --max-time 1 "http://$at/cgi-bin/health" 2>/dev/null; do sleep 0.02; done
    docker stop -t 2 "$r" >/dev/null
    s0=$(now)
    docker start "$r" >/dev/null
    until curl -fsS -o /dev/null --max-time 1 "http://$at/cgi-bin/health" 2>/dev/null; do sleep 0.02; done
    raw_ms+=($(( $(now) - s0 )))
    docker rm -f "$r" >/dev/null
    docker network rm "$r" >/dev/null
  done
  kill -TERM "$LOADER"; wait "$LOADER" || true
  echo "[load] $AWAKE awake tenants while the wakes ran: $(cat "$W/load-waking.txt")"
  local bp50 bp99 rp50 rp99
  bp50=$(printf '%s\n' "${berth_ms[@]}" | pct 50); bp99=$(printf '%s\n' "${berth_ms[@]}" | pct 99)
  rp50=$(printf '%s\n' "${raw_ms[@]}" | pct 50); rp99=$(printf '%s\n' "${raw_ms[@]}" | pct 99)
  echo "[wake] $WAKES wakes through the edge: p50 ${bp50} ms, p99 ${bp99} ms (all: ${berth_ms[*]})"
  echo "[wake] docker start + first 200 by hand: p50 ${rp50} ms, p99 ${rp99} ms (all: ${raw_ms[*]})"
  echo "[wake] ratio berth/by hand: p50 $(awk "BEGIN{printf \"%.2f\", $bp50/$rp50}"), p99 $(awk "BEGIN{printf \"%.2f\", $bp99/$rp99}")"
  rm -rf "$site"
}

run_mode() { # mode
  local mode=$1 tdir="$W/templates-$1"
  cp -r templates "$tdir"
  if [ "$mode" = exec ]; then
    python3 - "$tdir/$TEMPLATE/template.yaml" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
db = '    healthcheck:\n      test: ["CMD", "pg_isready", "-q", "-h", "/var/run/postgresql"]\n      interval: 5s\n      timeout: 3s\n      retries: 6\n'
app = '    healthcheck:\n      test: ["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/cgi-bin/health"]\n      interval: 10s\n      timeout: 3s\n      retries: 3\n'
if "  db:\n" in s:
    s = s.replace("    resource_share: 2\n", db + "    resource_share: 2\n", 1)
s = s.replace("      - /tmp\n    depends_on:", "      - /tmp\n" + app + "    depends_on:", 1) if "depends_on:" in s else s.rstrip("\n") + "\n"
if app not in s:
    i = s.index("\nversions:")
    s = s[:i] + "\n" + app.rstrip("\n") + s[i:]
open(p, "w").write(s)
PY
  fi
  rm -rf "$W/state" "$W/instances"; mkdir -p "$W/instances"
  cat > "$W/berth.yaml" <<YAML
state_dir: state
templates_dir: $tdir
instances_dir: instances
namespace: dens
admission: {memory_overcommit: 100, disk_overcommit: 100, cpu_overcommit: 100}  # packed past what admission allows by default
api: {socket: berth.sock}
network: {subnet_pool: 10.232.0.0/14, subnet_prefix: 28}
ports: {first: 30000, last: 32700}
resync_interval: 30s
metrics: {listen: none}
base_domain: apps.test
shared_database: {image: berth/postgres:15, memory: 4g, connection_limit: 5}
proxy: {http: 127.0.0.1:18980, https: 127.0.0.1:18943}
YAML
  local B=$B
  [ "$mode" = exec ] && B=${EXEC_BIN:?EXEC_BIN: the agent built before probes (see the header)}
  [ "$mode" = base ] && B=${BASE_BIN:?BASE_BIN: an older agent to compare with (see the header)}
  setsid "$B" --config "$W/berth.yaml" serve >"$W/agent-$mode.log" 2>&1 < /dev/null &
  AGENT=$!
  until "$B" --config "$W/berth.yaml" reconcile >/dev/null 2>&1; do sleep 0.2; done
  local rules0; rules0=$(iptables-save | grep -c '^-A')
  local nat0; nat0=$(iptables-save -t nat | grep -c '^-A')
  local t0; t0=$(now)
  for i in $(seq 1 "$N"); do printf 'tenant: d%04d\ntemplate: %s\n' "$i" "$TEMPLATE" > "$W/instances/d$(printf %04d "$i").yaml"; done
  until [ "$("$B" --config "$W/berth.yaml" ls -o json | grep -c '"phase": "running"')" -ge "$N" ]; do sleep 5; done
  local secs=$(( ($(now) - t0) / 1000 ))
  echo "[$mode] $N tenants running after ${secs} s: $(awk "BEGIN{printf \"%.0f\", $N*60/$secs}") tenants/min ($(docker ps -q --filter label=io.berth.namespace=dens | wc -l) containers)"
  local rules1; rules1=$(iptables-save | grep -c '^-A')
  local nat1; nat1=$(iptables-save -t nat | grep -c '^-A')
  echo "[$mode] iptables rules added for $N tenants: $((rules1 - rules0)) ($(awk "BEGIN{printf \"%.2f\", ($rules1-$rules0)/$N}") per tenant; nat: $((nat1 - nat0))); docker-proxy processes: $(pgrep -xc docker-proxy || true)"
  sleep "$SETTLE"
  idle_figures "$mode" "$B"
  [ "${SLEEP:-0}" = 1 ] && [ "$mode" = probe ] && sleep_phase "$B"
  kill "$AGENT"; wait "$AGENT" 2>/dev/null || true; AGENT=
  cleanup
}

for m in $MODES; do run_mode "$m"; done
