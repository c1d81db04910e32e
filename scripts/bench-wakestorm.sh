#!/usr/bin/env bash
# A wake storm on the real engine (issue 29): N tenants of `demo-shared` (one app container
# each, on the shared PostgreSQL), AWAKE of them awake under a fixed request rate, the rest
# asleep; then one request to every sleeper at once (a client that read the names from
# certificate transparency logs). Two rounds, side by side in one run, each from the same
# asleep state:
#   uncapped  max_wakes 1024, no per-client limit, host memory not limiting (berth before)
#   capped    max_wakes 4, admission memory MEM: wakes past it are refused at once
# For each: the awake tenants' latency (p50/p99, errors) during the storm, the host's memory
# peak (`free`, every 0.5 s), how the storm's requests were answered, and how long it took.
# Usage: scripts/bench-wakestorm.sh [N=250] [AWAKE=50] [MEM=18g]
# CAP_WAKES (default 4): the capped round's max_wakes. ONLY_CAPPED=1 skips the uncapped round.
# BASELINE=1 adds a round before the capped one with room for no wake at all: the same storm,
# every request answered the maintenance page at once, no container started; it separates
# what the storm's requests cost (the client's 200 curls, TLS, the pages) from the wakes'.
# CLIENT_CPU=0.2 runs the storm's curls in a cgroup (v1 or v2) with that much CPU: an attacker
# on another machine spends its own cores, not the host's.
# PROFILE=1 measures where the engine's CPU goes instead of running the storm (see below).
# ENGINE_WEIGHT=10 adds a last capped round with `engine: {cpu_weight: 10}`: the agent moves the
# engine (dockerd, containerd, the shims) into a CPU cgroup of that weight (a plain process has
# 100), so container starts yield to the tenants and the edge. Moved back afterwards.
# ENGINE_MAX=0.5 adds a round after that with `engine: {cpu_max: 0.5}` (and the weight, if
# ENGINE_WEIGHT is set): the engine's group gets a CFS quota of that many cores.
# Each round also reports where its CPU went: the engine, the agent (the edge included), the
# containers (cpuacct of /docker) and the host in all, and how many reconcile passes ran.
# BASE_BIN=/path/to/an/older/berth runs the capped round first with that binary, then with this
# (each round first primes: every sleeper woken and put to sleep again by that round's agent, so
# that neither wakes containers the other made; see prime)
# tree's: the same storm, side by side in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-250}
AWAKE=${2:-50}
MEM=${3:-18g}
RATE=${RATE:-20}
./scripts/setup-docker.sh >/dev/null
cargo build --release --quiet
B="$PWD/target/release/berth"
W=$(mktemp -d /tmp/berth-storm.XXXX)
cleanup() {
  [ -d /sys/fs/cgroup/cpu/berth-engine ] && declare -f engine_into >/dev/null && engine_into /sys/fs/cgroup/cpu
  [ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null && sleep 1 || true
  docker ps -aq --filter label=io.berth.namespace=storm | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter label=io.berth.namespace=storm | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter label=io.berth.namespace=storm | xargs -r docker volume rm >/dev/null
}
trap 'cleanup; rm -rf "$W"' EXIT
now() { date +%s%3N; }
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if(i<1)i=1; print a[i]}'; }
name() { printf 'd%04d' "$1"; }
used_mib() { free -m | awk '/Mem:/{print $3}'; }

config() { # max_wakes client_wakes admission_memory
  cat > "$W/berth.yaml" <<YAML
state_dir: state
templates_dir: $PWD/templates
instances_dir: instances
namespace: storm
api: {socket: berth.sock}
network: {subnet_pool: 10.232.0.0/14, subnet_prefix: 28}
ports: {first: 30000, last: 32700}
resync_interval: 30s
metrics: {listen: 127.0.0.1:18964, interval: 15s}
base_domain: apps.test
admission: {memory: $3, cpu_overcommit: 100}
plans:
  awake: {memory: 128m, cpus: 0.5, pids: 100}
  napping: {memory: 128m, cpus: 0.5, pids: 100, sleep_after: 20s, sleep_memory: 0.25}
shared_database: {image: berth/postgres:15, memory: 4g, connection_limit: 5}
engine: {cpu_weight: ${5:-null}, cpu_max: ${6:-null}}
proxy: {http: 127.0.0.1:18980, https: 127.0.0.1:18943, max_wakes: $1, client_wakes_per_minute: $2,
        wake_gap: ${4:-0s}, timeouts: {max_pause: 30s}}
YAML
}

start_agent() {
  setsid "${AGENT_BIN:-$B}" --config "$W/berth.yaml" serve >>"$W/agent.log" 2>&1 < /dev/null &
  AGENT=$!
  until "$B" --config "$W/berth.yaml" reconcile >/dev/null 2>&1; do sleep 0.2; done
}

stop_agent() { kill "$AGENT"; wait "$AGENT" 2>/dev/null || true; AGENT=; }

all_asleep() {
  local t0; t0=$(now)
  until [ "$("$B" --config "$W/berth.yaml" ls -o json | grep -c '"phase": "asleep"')" -ge $((N - AWAKE)) ]; do sleep 5; done
  until [ "$(docker ps -q --filter label=io.berth.namespace=storm --filter label=io.berth.service=app | wc -l)" -le "$AWAKE" ]; do sleep 5; done
  echo "[sleep] $((N - AWAKE)) asleep, their containers stopped, after $(( ($(now) - t0) / 1000 )) s"
}

# Every sleeper made awake and then asleep again by the agent now running: its containers are
# then the ones this agent builds, so its wakes are starts, not the remove + create + start of
# containers an agent of another spec hash made (BASE_BIN rounds compare like with like).
prime() {
  local t0; t0=$(now)
  sed -i 's/^plan: napping$/plan: awake/' "$W"/instances/*.yaml
  until [ "$("$B" --config "$W/berth.yaml" ls -o json | grep -c '"phase": "running"')" -ge "$N" ]; do sleep 5; done
  sed -i 's/^plan: awake$/plan: napping/' $(for i in $(seq $((AWAKE + 1)) "$N"); do echo "$W/instances/$(name "$i").yaml"; done)
  echo "[prime] all $N running under this agent after $(( ($(now) - t0) / 1000 )) s"
  all_asleep
}

# The storm client's cgroup (CLIENT_CPU), and a command run in it.
CG=""
confine() {
  [ -z "${CLIENT_CPU:-}" ] && return 0
  local quota; quota=$(awk -v c="$CLIENT_CPU" 'BEGIN{print int(c*100000)}')
  if [ -d /sys/fs/cgroup/cpu ]; then
    CG=/sys/fs/cgroup/cpu/berth-storm-client; mkdir -p "$CG"
    echo 100000 > "$CG/cpu.cfs_period_us"; echo "$quota" > "$CG/cpu.cfs_quota_us"
  else
    CG=/sys/fs/cgroup/berth-storm-client; mkdir -p "$CG"; echo "$quota 100000" > "$CG/cpu.max"
  fi
}
in_client() {
  if [ -n "$CG" ]; then sh -c 'echo $$ > "$0/cgroup.procs"; exec "$@"' "$CG" "$@"; else "$@"; fi
}

# CPU time in ms so far: engine agent containers host (children reaped included).
ticks() { # pids...
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12+$13+$14+$15}')))
  done
  echo "$t"
}
cpu_now() {
  local hz; hz=$(getconf CLK_TCK)
  local eng; eng=$(ticks $(pgrep -x dockerd) $(pgrep -x containerd) $(pgrep -f containerd-shim))
  local agt; agt=$(ticks "$AGENT")
  local ctr; ctr=$(cat /sys/fs/cgroup/cpuacct/docker/cpuacct.usage 2>/dev/null || echo 0)
  local all; all=$(awk '/^cpu /{print $2+$3+$4+$6+$7+$8}' /proc/stat)
  echo "$((eng * 1000 / hz)) $((agt * 1000 / hz)) $((ctr / 1000000)) $((all * 1000 / hz))"
}
cpu_delta() { # before after
  read -r e0 a0 c0 h0 <<<"$1"; read -r e1 a1 c1 h1 <<<"$2"
  echo "engine $((e1 - e0)) ms, agent $((a1 - a0)) ms, containers $((c1 - c0)) ms, host in all $((h1 - h0)) ms"
}
engine_into() { # cgroup dir: moves dockerd, containerd and the shims there
  local p
  for p in $(pgrep -x dockerd) $(pgrep -x containerd) $(pgrep -f containerd-shim); do
    echo "$p" > "$1/cgroup.procs" 2>/dev/null || true
  done
}

passes() { curl -s http://127.0.0.1:18964/metrics | awk '/^berth_reconcile_pass_duration_seconds_count/{print $2}'; }

storm() { # label
  local label=$1 hosts=()
  for i in $(seq 1 "$AWAKE"); do hosts+=("$(name "$i").apps.test"); done
  python3 scripts/rate-load.py "$W/ca.pem" 18943 "$RATE" "${hosts[@]}" > "$W/load-$label.txt" &
  local loader=$!
  (while :; do used_mib; sleep 0.5; done) > "$W/mem-$label.txt" &
  local sampler=$!
  sleep 5
  local base; base=$(used_mib)
  local t0; t0=$(now)
  local cpu0; cpu0=$(cpu_now)
  local passes0; passes0=$(passes)
  confine
  seq $((AWAKE + 1)) "$N" | in_client xargs -P $((N - AWAKE)) -I{} sh -c \
    't=$(printf "d%04d" {}); curl -s -o /dev/null -w "%{http_code} %{time_total}\n" --max-time 120 --cacert '"$W"'/ca.pem --resolve "$t.apps.test:18943:127.0.0.1" "https://$t.apps.test:18943/"' \
    > "$W/storm-$label.txt"
  local took=$(( $(now) - t0 ))
  local cpu1; cpu1=$(cpu_now)
  local passes1; passes1=$(passes)
  sleep 5
  kill -TERM "$loader"; wait "$loader" || true
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  local peak; peak=$(sort -n "$W/mem-$label.txt" | tail -1)
  local codes; codes=$(cut -d' ' -f1 "$W/storm-$label.txt" | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')
  local p50 p99
  p50=$(awk '$1==200{print $2*1000}' "$W/storm-$label.txt" | pct 50)
  p99=$(awk '$1==200{print $2*1000}' "$W/storm-$label.txt" | pct 99)
  echo "[$label] storm of $((N - AWAKE)) first requests: answered ${codes}in ${took} ms; woken ones answered p50 ${p50:-–} ms, p99 ${p99:-–} ms"
  echo "[$label] host memory used: ${base} MiB before, peak ${peak} MiB (+$((peak - base)) MiB); awake now: $("$B" --config "$W/berth.yaml" ls -o json | grep -c '"phase": "running"')"
  echo "[$label] CPU during the storm (${took} ms on $(nproc) cores): $(cpu_delta "$cpu0" "$cpu1"); reconcile passes: $(( ${passes1%.*} - ${passes0%.*} ))"
  echo "[$label] $AWAKE awake tenants at $RATE req/s during the storm: $(cat "$W/load-$label.txt")"
}

mkdir -p "$W/instances"
config 1024 100000 "$MEM"
start_agent
t0=$(now)
for i in $(seq 1 "$N"); do
  plan=awake; [ "$i" -gt "$AWAKE" ] && plan=napping
  printf 'tenant: %s\ntemplate: demo-shared\nplan: %s\n' "$(name "$i")" "$plan" > "$W/instances/$(name "$i").yaml"
done
until [ "$("$B" --config "$W/berth.yaml" ls -o json | grep -cE '"phase": "(running|asleep)"')" -ge "$N" ]; do sleep 5; done
echo "[setup] $N tenants up after $(( ($(now) - t0) / 1000 )) s"
"$B" --config "$W/berth.yaml" ca > "$W/ca.pem"
all_asleep
# PROFILE=1: instead of the storm rounds, where the engine's CPU goes on this host (idle, per
# reconcile pass, per wake one after another, per list call, per raw stop + start); then exits.
if [ "${PROFILE:-0}" = 1 ]; then
  eng() { cpu_now | cut -d' ' -f1; }
  agt() { cpu_now | cut -d' ' -f2; }
  e0=$(eng); a0=$(agt); sleep 20
  echo "[profile] idle 20 s: engine $(( $(eng) - e0 )) ms, agent $(( $(agt) - a0 )) ms"
  e0=$(eng); a0=$(agt); t0=$(now)
  for _ in $(seq 10); do "$B" --config "$W/berth.yaml" reconcile >/dev/null; done
  echo "[profile] 10 passes in $(( $(now) - t0 )) ms: engine $(( $(eng) - e0 )) ms, agent $(( $(agt) - a0 )) ms"
  e0=$(eng); a0=$(agt); t0=$(now)
  for k in $(seq $((AWAKE + 1)) $((AWAKE + 10))); do
    t=$(name "$k")
    curl -s -o /dev/null --max-time 60 --cacert "$W/ca.pem" --resolve "$t.apps.test:18943:127.0.0.1" "https://$t.apps.test:18943/"
  done
  echo "[profile] 10 wakes one after another in $(( $(now) - t0 )) ms: engine $(( $(eng) - e0 )) ms, agent $(( $(agt) - a0 )) ms"
  for what in "ps -a -q" "network ls -q" "volume ls -q"; do
    e0=$(eng)
    for _ in $(seq 10); do docker $what --filter label=io.berth.namespace=storm >/dev/null; done
    echo "[profile] 10 × docker $what: engine $(( $(eng) - e0 )) ms"
  done
  c=$(docker ps -q --filter label=io.berth.namespace=storm --filter label=io.berth.service=app | head -1)
  e0=$(eng)
  for _ in $(seq 5); do docker stop -t 1 "$c" >/dev/null; docker start "$c" >/dev/null; done
  echo "[profile] 5 raw docker stop + start: engine $(( $(eng) - e0 )) ms (the agent's passes on their events included)"
  exit 0
fi
quiet=$(timeout -s TERM 30 python3 scripts/rate-load.py "$W/ca.pem" 18943 "$RATE" $(for i in $(seq 1 "$AWAKE"); do echo "$(name "$i").apps.test"; done) || true)
echo "[idle] $AWAKE awake tenants at $RATE req/s, nobody waking, 30 s: $quiet"
# Round 1, uncapped: the admission memory is set far above the host so nothing is refused.
if [ "${ONLY_CAPPED:-0}" != 1 ]; then
  stop_agent; config 1024 100000 1t; start_agent
  storm uncapped
  all_asleep
fi
if [ "${BASELINE:-0}" = 1 ]; then
  stop_agent; config 4 100000 1m; start_agent
  storm no-wakes
fi
# Round 2, capped (with BASE_BIN: first with that binary, then with this tree's).
if [ -n "${BASE_BIN:-}" ]; then
  stop_agent; config "${CAP_WAKES:-4}" 100000 "$MEM" "${WAKE_GAP:-0s}"; AGENT_BIN=$BASE_BIN start_agent
  prime
  storm "base-capped-${CAP_WAKES:-4}"
  all_asleep
fi
stop_agent; config "${CAP_WAKES:-4}" 100000 "$MEM" "${WAKE_GAP:-0s}"; start_agent
[ -n "${BASE_BIN:-}" ] && prime
storm "capped-${CAP_WAKES:-4}-gap-${WAKE_GAP:-0s}"
if [ -n "${ENGINE_WEIGHT:-}" ]; then
  all_asleep
  stop_agent; config "${CAP_WAKES:-4}" 100000 "$MEM" "${WAKE_GAP:-0s}" "$ENGINE_WEIGHT"; start_agent
  grep -o 'engine processes[^"]*' "$W/agent.log" | tail -1 || true
  storm "capped-${CAP_WAKES:-4}-engine-weight-$ENGINE_WEIGHT"
  engine_into /sys/fs/cgroup/cpu
fi
if [ -n "${ENGINE_MAX:-}" ]; then
  all_asleep
  stop_agent; config "${CAP_WAKES:-4}" 100000 "$MEM" "${WAKE_GAP:-0s}" "${ENGINE_WEIGHT:-null}" "$ENGINE_MAX"; start_agent
  grep -o 'engine processes[^"]*' "$W/agent.log" | tail -1 || true
  storm "capped-${CAP_WAKES:-4}-engine-weight-${ENGINE_WEIGHT:-none}-max-$ENGINE_MAX"
  engine_into /sys/fs/cgroup/cpu
fi
"$B" --config "$W/berth.yaml" ls -o json | grep -o '"error": "not woken[^"]*"' | head -1 || true
# One client and the per-client limit (default 10 a minute) on what is still asleep.
stop_agent; config 4 10 "$MEM"; start_agent
limited=$(seq $((N - 30)) "$N" | xargs -P 30 -I{} sh -c \
  't=$(printf "d%04d" {}); curl -s -o /dev/null -w "%{http_code}\n" --max-time 60 --cacert '"$W"'/ca.pem --resolve "$t.apps.test:18943:127.0.0.1" "https://$t.apps.test:18943/"' | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')
echo "[client] one client, 31 sleepers at once, client_wakes_per_minute 10: $limited"
stop_agent
