#!/usr/bin/env bash
# Benchmarks on the real engine, side by side in one run (numbers go to docs/BENCHMARKS.md):
#  1. provisioning: `berth add` → tenant's health path answers 200, against the same two
#     containers (same images, same database init, same healthcheck) started by hand with
#     `docker run` → first 200; RUNS of each, interleaved.
#  2. idle reconcile pass with INSTANCES real demo tenants (2 containers each).
# Usage: scripts/bench.sh [RUNS=5] [INSTANCES=100]. The fake-runtime pass: cargo bench --bench idle_pass
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
INSTANCES=${2:-100}
./scripts/setup-docker.sh >/dev/null
./scripts/build-images.sh >/dev/null
cargo build --release --quiet
B="$PWD/target/release/berth"
W=$(mktemp -d /tmp/berth-bench.XXXX)
mkdir -p "$W/instances"
cat > "$W/berth.yaml" <<YAML
state_dir: state
templates_dir: $PWD/templates
instances_dir: instances
namespace: bench
api: {socket: berth.sock}
network: {subnet_pool: 10.251.0.0/16, subnet_prefix: 28}
ports: {first: 45000, last: 45999}
resync_interval: 30s
YAML
cleanup() {
  [ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null || true
  docker ps -aq --filter label=io.berth.namespace=bench | xargs -r docker rm -f >/dev/null
  docker ps -aq --filter name='^benchraw' | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter label=io.berth.namespace=bench | xargs -r docker network rm >/dev/null
  docker network ls -q --filter name='^benchraw' | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter label=io.berth.namespace=bench | xargs -r docker volume rm >/dev/null
  docker volume ls -q --filter name='^benchraw' | xargs -r docker volume rm >/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
b() { "$B" --config "$W/berth.yaml" "$@"; }
now() { date +%s%3N; }
wait_200() { until curl -fsS -o /dev/null --max-time 1 "http://$1/cgi-bin/health" 2>/dev/null; do sleep 0.02; done; }

setsid "$B" --config "$W/berth.yaml" serve >"$W/agent.log" 2>&1 < /dev/null &
AGENT=$!
until b reconcile >/dev/null 2>&1; do sleep 0.1; done

provision_berth() { # tenant → ms
  local t0 at
  t0=$(now)
  b add "$1" --template demo >/dev/null
  until at=$(b status "$1" -o json 2>/dev/null | grep -o '"address": *"[0-9.:]*"' | grep -oE '[0-9]+(\.[0-9]+){3}:[0-9]+'); do sleep 0.02; done
  wait_200 "$at"
  echo $(( $(now) - t0 ))
}

provision_raw() { # n (< 256) → ms ; the same containers berth makes, by hand (the app at a
  # fixed address above the network's dynamic range, nothing published, as berth does)
  local n=benchraw$1 net=10.249.$1 t0 d
  d=$(mktemp -d); printf '%s' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$d/pw"
  cp "$d/pw" "$d/pw-app"; chown 999:999 "$d/pw"; chown 65534:65534 "$d/pw-app"; chmod 400 "$d/pw" "$d/pw-app"
  printf "TENANT='%s'\nTITLE='raw'\nCOLOR='#fff'\nDB_HOST=db\nDB_PORT=5432\nDB_NAME=app\nDB_USER=app\nDB_PASSWORD_FILE=/run/secrets/db_password\n" "$n" > "$d/site.conf"
  chmod 444 "$d/site.conf"
  t0=$(now)
  docker network create --subnet "$net.0/28" --ip-range "$net.0/29" "$n" >/dev/null
  docker volume create "$n-pg" >/dev/null
  docker run -d --name "$n-db" --network "$n" --network-alias db --user 999:999 --read-only \
    --tmpfs /var/run/postgresql:rw,nosuid,size=1m,uid=999,gid=999 --tmpfs /tmp \
    -e POSTGRES_USER=app -e POSTGRES_DB=app -e POSTGRES_PASSWORD_FILE=/run/secrets/db_password \
    -v "$d/pw:/run/secrets/db_password:ro" -v "$n-pg:/var/lib/postgresql/data" \
    --health-cmd 'pg_isready -q -h /var/run/postgresql' --health-interval 5s --health-timeout 3s --health-retries 6 \
    berth/postgres:15 >/dev/null
  until [ "$(docker inspect -f '{{.State.Health.Status}}' "$n-db")" = healthy ]; do sleep 0.02; done
  docker run -d --name "$n-app" --network "$n" --ip "$net.14" --user 65534:65534 --read-only --tmpfs /tmp \
    -v "$d/site.conf:/etc/demo/site.conf:ro" -v "$d/pw-app:/run/secrets/db_password:ro" \
    berth/demo:1 >/dev/null
  wait_200 "$net.14:8080"
  echo $(( $(now) - t0 ))
  rm -rf "$d"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "== provisioning: add → health 200 (ms), $RUNS runs each, interleaved"
berth_ms=(); raw_ms=()
for i in $(seq 1 "$RUNS"); do
  r=$(provision_raw "$i"); raw_ms+=("$r")
  x=$(provision_berth "p$i"); berth_ms+=("$x")
  echo "run $i: berth ${x} ms, docker run ${r} ms"
done
bm=$(printf '%s\n' "${berth_ms[@]}" | median); rm_=$(printf '%s\n' "${raw_ms[@]}" | median)
echo "median: berth ${bm} ms, raw docker run ${rm_} ms, ratio berth/raw $(awk "BEGIN{printf \"%.2f\", $bm/$rm_}")"

echo "== idle reconcile pass with $INSTANCES real instances"
for i in $(seq 1 "$INSTANCES"); do printf 'tenant: i%03d\ntemplate: demo\n' "$i" > "$W/instances/i$(printf %03d "$i").yaml"; done
t0=$(now)
until [ "$(b ls -o json | grep -c '"phase": "running"')" -ge $((INSTANCES + RUNS)) ]; do sleep 2; done
echo "all $INSTANCES instances running after $(( ($(now) - t0) / 1000 )) s ($(docker ps -q --filter label=io.berth.namespace=bench | wc -l) containers)"
for _ in 1 2; do b reconcile >/dev/null; done
for _ in $(seq 1 10); do b reconcile | tr -d ' \n' | grep -o '"duration_ms":[0-9.]*\|"mutations":[0-9]*' | tr '\n' ' '; echo; done | tee "$W/idle.txt"
echo "idle pass p50: $(grep -o 'duration_ms":[0-9.]*' "$W/idle.txt" | grep -o '[0-9.]*$' | median) ms; agent RSS $(ps -o rss= -p "$AGENT") KiB"
