#!/usr/bin/env bash
# Instructions per request of berth's edge, nginx and haproxy, counted by valgrind's callgrind
# (instruction counts do not move with the noise of a shared 2-core machine the way req/s
# does). Each proxy runs under callgrind in front of the same loopback nginx backend; for each
# scenario h2load sends N and then 2N requests on the same number of connections, and the
# difference of the two counts divided by N is the marginal cost of one request (connection
# setup and TLS handshakes cancel out). berth also writes one callgrind profile per scenario
# (the 2N run) to $OUT, summarised with callgrind_annotate.
# Usage: scripts/profile-proxy.sh [N]   (OUT=dir keeps the profiles; default a temp dir;
# BERTH_BIN=path profiles that build of benches/proxy.rs instead of this tree's)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v h2load >/dev/null || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
grep -q ' bench.test$' /etc/hosts || echo '127.0.0.1 bench.test' >> /etc/hosts
# The path of the binary just built (not whatever proxy-* binary is newest).
BIN=$(cargo bench --bench proxy --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p')
BIN=${BERTH_BIN:-$BIN} # another build of the bench (e.g. an older commit's), to compare
W=$(mktemp -d /tmp/berth-prof.XXXX)
OUT=${OUT:-$W/profiles}
mkdir -p "$OUT" "$W/www"
chmod 755 "$W" # the backend's worker (nobody) must read the page
head -c 1024 /dev/urandom | base64 > "$W/www/index.html"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  nginx -c "$W/backend.conf" -s stop 2>/dev/null || true
}
trap cleanup EXIT
. scripts/proxy-configs.sh
proxy_configs "$W" 1 off
nginx -c "$W/backend.conf"

# berth's bench proxy (1,000 tenants) writes the certificate nginx and haproxy use too.
# Under callgrind the client sees berth ~50x slower, so it starts with instrumentation off.
OUT_DIR=$W BACKEND=127.0.0.1:18080 TENANTS=${TENANTS:-1000} PLAIN_PORT=18083 HTTPS_PORT=18446 \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/berth.%p" "$BIN" \
  2>"$W/berth.log" &
for _ in $(seq 600); do grep -q ready "$W/berth.log" && break; sleep 0.5; done
grep -q ready "$W/berth.log" || { cat "$W/berth.log"; exit 1; }
BERTH=$(pgrep -f "callgrind-out-file=$OUT/berth" | head -1)

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/nginx.%p" \
  nginx -c "$W/proxy.conf" 2>"$W/nginx.log" &
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/haproxy.%p" \
  haproxy -f "$W/haproxy.cfg" -db 2>"$W/haproxy.log" &
sleep 8
NGINX=$(pgrep -f "callgrind-out-file=$OUT/nginx" | head -1)
HAPROXY=$(pgrep -f "callgrind-out-file=$OUT/haproxy" | head -1)

# Instructions counted in `pid` while `h2load ARGS -n count` runs.
count() { # pid label count args...
  local pid=$1 label=$2 n=$3
  shift 3
  callgrind_control -z "$pid" >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  h2load -n "$n" "$@" >"$W/h2load.$label.$n" 2>&1
  grep -q "succeeded, 0 failed, 0 errored" <(grep "^requests:" "$W/h2load.$label.$n" | sed 's/.*total, [0-9]* started, [0-9]* done, //') ||
    { echo "h2load failed for $label: $(grep '^requests:' "$W/h2load.$label.$n")" >&2; exit 1; }
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$label.$n" "$pid" >/dev/null
  local f
  f=$(ls -t "$OUT/"*".$pid."* 2>/dev/null | head -1)
  awk '/^totals:/ {print $2; exit}' "$f"
}

echo "# $(date -u +%F) instructions per request (callgrind), N=$N then 2N requests per scenario"
printf '%-34s %-8s %14s\n' scenario proxy instr/request
row() { # scenario proxy pid args...
  local scenario=$1 proxy=$2 pid=$3
  shift 3
  local a b
  local label=$proxy-$(tr -c 'a-z0-9\n' - <<<"$scenario")
  a=$(count "$pid" "$label" "$N" "$@")
  b=$(count "$pid" "$label" $((2 * N)) "$@")
  printf '%-34s %-8s %14s\n' "$scenario" "$proxy" $(((b - a) / N))
}
for p in nginx:18081:18444:$NGINX haproxy:18082:18445:$HAPROXY berth:18083:18446:$BERTH; do
  IFS=: read -r name plain tls pid <<<"$p"
  row "plaintext keep-alive (h1, c4)" "$name" "$pid" -c4 --h1 "http://bench.test:$plain/"
  row "TLS keep-alive (h1, c4)" "$name" "$pid" -c4 --h1 "https://bench.test:$tls/"
  row "h2 over TLS (c4, m10)" "$name" "$pid" -c4 -m10 "https://bench.test:$tls/"
done
echo "berth profiles: $OUT (callgrind_annotate FILE)"
