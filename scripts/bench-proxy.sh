#!/usr/bin/env bash
# Side-by-side proxy benchmark on loopback: berth's edge proxy, nginx and haproxy (Debian
# packages) in front of the same backend (nginx serving a small static page), driven by the
# same wrk/h2load load. Prints req/s, p50/p99 latency and proxy RSS, plus ratios to nginx.
# berth runs with 1,000 tenant certificates loaded. Every response must be a 2xx (a row whose
# client saw anything else fails the script). Then a fixed rate of 1,000 req/s (h2load --rps,
# per-request latencies from its log) direct and through each proxy: the latency each adds.
# cpu_us/req is the CPU time (user + system) the proxy's processes used per request in that
# row: unlike req/s it does not move with how the 2 cores are shared with the load generator.
# BASE_BIN=path runs a second berth bench binary (e.g. built from an older commit) beside
# this one for before/after rows in the same run.
# Usage: scripts/bench-proxy.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONNS=${CONNS:-50}
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Clients need SNI, so bench.test must resolve to loopback.
grep -q ' bench.test$' /etc/hosts || echo '127.0.0.1 bench.test' >> /etc/hosts
# The path of the binary just built (not whatever proxy-* binary is newest).
BIN=$(cargo bench --bench proxy --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p')
W=$(mktemp -d /tmp/berth-bench.XXXX)
trap 'kill $(jobs -p) 2>/dev/null; nginx -c $W/backend.conf -s stop 2>/dev/null; nginx -c $W/proxy.conf -s stop 2>/dev/null; kill $(cat $W/haproxy.pid 2>/dev/null) 2>/dev/null; true' EXIT
chmod 755 "$W" # the backend's worker (nobody) must read the page: a 0700 dir gets 403s
mkdir -p "$W/www" && head -c 1024 /dev/urandom | base64 > "$W/www/index.html"

OUT_DIR=$W BACKEND=127.0.0.1:18080 TENANTS=1000 PLAIN_PORT=18083 HTTPS_PORT=18446 "$BIN" 2>"$W/berth.log" &
BERTH=$!
for _ in $(seq 100); do grep -q ready "$W/berth.log" && break; sleep 0.2; done
# The same proxy with the access log on (JSON lines to a file), to price it in the same run.
mkdir -p "$W/al"
OUT_DIR=$W/al ACCESS_LOG=1 BACKEND=127.0.0.1:18080 TENANTS=1000 PLAIN_PORT=18084 HTTPS_PORT=18447 "$BIN" 2>"$W/berth-al.log" &
BERTH_AL=$!
for _ in $(seq 100); do grep -q ready "$W/berth-al.log" && break; sleep 0.2; done

# And with every tenant under a rate and in-flight limit too high to refuse: the limiter's cost.
mkdir -p "$W/rl"
OUT_DIR=$W/rl RATE=1000000 BACKEND=127.0.0.1:18080 TENANTS=1000 PLAIN_PORT=18085 HTTPS_PORT=18448 "$BIN" 2>"$W/berth-rl.log" &
BERTH_RL=$!
for _ in $(seq 100); do grep -q ready "$W/berth-rl.log" && break; sleep 0.2; done
if [ -n "${BASE_BIN:-}" ]; then
  mkdir -p "$W/base"
  OUT_DIR=$W/base RATE=1000000 BACKEND=127.0.0.1:18080 TENANTS=1000 PLAIN_PORT=18086 HTTPS_PORT=18449 "$BASE_BIN" 2>"$W/berth-base.log" &
  BERTH_BASE=$!
  for _ in $(seq 100); do grep -q ready "$W/berth-base.log" && break; sleep 0.2; done
fi

. scripts/proxy-configs.sh
proxy_configs "$W" 2 on
nginx -c "$W/backend.conf"
nginx -c "$W/proxy.conf"
haproxy -f "$W/haproxy.cfg" -D -p "$W/haproxy.pid"
sleep 1

rss() { case $1 in
  berth) ps -o rss= -p $BERTH ;;
  berth+log) ps -o rss= -p $BERTH_AL ;;
  berth+limit) ps -o rss= -p $BERTH_RL ;;
  before+limit) ps -o rss= -p $BERTH_BASE ;;
  nginx) ps -o rss= --ppid "$(cat $W/proxy.pid)" | awk '{s+=$1} END {print s}' ;;
  haproxy) ps -o rss= -p "$(cat $W/haproxy.pid)" ;;
  direct) echo 0 ;; esac; }

# wrk: "req/s p50_ms p99_ms"
run_wrk() {
  local out
  out=$(wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "$@" 2>/dev/null)
  if grep -q "Non-2xx" <<<"$out"; then
    echo "a proxy answered other than 2xx: $* — $(grep Non-2xx <<<"$out")" >&2
    touch "$W/failed"
  fi
  awk '
    /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /requests in/ {n=$1}
    END {printf "%.0f %.3f %.3f %d", rps, ms(p50), ms(p99), n}' <<<"$out"
}
run_h2() {
  local out
  out=$(h2load -t2 -c"$CONNS" -m10 -D"$DUR" "$1" 2>/dev/null)
  if ! grep -q "^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx" <<<"$out"; then
    echo "h2 answers other than 2xx: $1 — $(grep '^status codes' <<<"$out")" >&2
    touch "$W/failed"
  fi
  awk '/^finished in/ {rps=$4} /^time for request/ {mean=$6} /^requests:/ {n=$8}
    END {printf "%.0f %s - %d", rps, mean, n}' <<<"$out"
}

echo "# $(date -u +%F) ${DUR}s per run, $CONNS connections, wrk -t2 / h2load -t2 -m10 (h2 rows: p50 column is the mean)"
printf '%-32s %-13s %8s %8s %8s %7s %7s %9s\n' scenario proxy req/s p50_ms p99_ms rss_MB vs_nginx cpu_us/req
# The proxy's processes, and the CPU time (user + system, clock ticks) they have used.
pids() { case $1 in
  berth) echo $BERTH ;; berth+log) echo $BERTH_AL ;; berth+limit) echo $BERTH_RL ;;
  before+limit) echo $BERTH_BASE ;; nginx) pgrep -P "$(cat $W/proxy.pid)" ;;
  haproxy) cat "$W/haproxy.pid" ;; direct) pgrep -P "$(cat $W/backend.pid)" ;; esac; }
ticks() { for p in $(pids "$1"); do cat "/proc/$p/stat"; done | awk '{s += $14 + $15} END {print s + 0}'; }
report() { # scenario proxy command args...: runs the load, prints the row
  local scenario=$1 proxy=$2 t0 res
  shift 2
  t0=$(ticks "$proxy")
  res=$("$@")
  read -r rps p50 p99 n <<<"$res"
  local cpu mb=$(( $(rss "$proxy") / 1024 ))
  cpu=$(awk -v t=$(( $(ticks "$proxy") - t0 )) -v n="$n" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
  [ "$proxy" = nginx ] && NGINX_RPS=$rps
  ratio=$(awk -v a="$rps" -v b="${NGINX_RPS:-0}" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "-" }')
  printf '%-32s %-13s %8s %8s %8s %7s %7s %9s\n' "$scenario" "$proxy" "$rps" "$p50" "$p99" "$mb" "$ratio" "$cpu"
}
B=${BASE_BIN:+before+limit}
report "plaintext keep-alive" direct run_wrk http://127.0.0.1:18080/
report "plaintext keep-alive" nginx run_wrk -H 'Host: bench.test' http://127.0.0.1:18081/
report "plaintext keep-alive" haproxy run_wrk -H 'Host: bench.test' http://127.0.0.1:18082/
report "plaintext keep-alive" berth run_wrk -H 'Host: bench.test' http://127.0.0.1:18083/
report "plaintext keep-alive" berth+log run_wrk -H 'Host: bench.test' http://127.0.0.1:18084/
report "plaintext keep-alive" berth+limit run_wrk -H 'Host: bench.test' http://127.0.0.1:18085/
[ -n "$B" ] && report "plaintext keep-alive" "$B" run_wrk -H 'Host: bench.test' http://127.0.0.1:18086/
report "plaintext keep-alive" berth run_wrk -H 'Host: bench.test' http://127.0.0.1:18083/
report "TLS keep-alive" nginx run_wrk -H 'Host: bench.test' https://bench.test:18444/
report "TLS keep-alive" haproxy run_wrk -H 'Host: bench.test' https://bench.test:18445/
report "TLS keep-alive (1000 certs)" berth run_wrk -H 'Host: bench.test' https://bench.test:18446/
report "TLS keep-alive (1000 certs)" berth+log run_wrk -H 'Host: bench.test' https://bench.test:18447/
report "TLS keep-alive (1000 certs)" berth+limit run_wrk -H 'Host: bench.test' https://bench.test:18448/
[ -n "$B" ] && report "TLS keep-alive (1000 certs)" "$B" run_wrk -H 'Host: bench.test' https://bench.test:18449/
report "TLS new conn per request" nginx run_wrk -H 'Host: bench.test' -H 'Connection: close' https://bench.test:18444/
report "TLS new conn per request" haproxy run_wrk -H 'Host: bench.test' -H 'Connection: close' https://bench.test:18445/
report "TLS new conn (1000 certs)" berth+limit run_wrk -H 'Host: bench.test' -H 'Connection: close' https://bench.test:18448/
[ -n "$B" ] && report "TLS new conn (1000 certs)" "$B" run_wrk -H 'Host: bench.test' -H 'Connection: close' https://bench.test:18449/
report "h2 over TLS (h2load -m10)" nginx run_h2 https://bench.test:18444/
report "h2 over TLS (h2load -m10)" haproxy run_h2 https://bench.test:18445/
report "h2 over TLS (h2load -m10)" berth+limit run_h2 https://bench.test:18448/
[ -n "$B" ] && report "h2 over TLS (h2load -m10)" "$B" run_h2 https://bench.test:18449/

# A fixed 1,000 req/s (10 connections x 100 req/s, HTTP/1.1 keep-alive) for 10 s: latency
# percentiles from h2load's per-request log, and what each proxy adds over the backend alone.
fixed() { # url [h2load args]: "p50 p95 p99" in ms
  local url=$1
  shift
  rm -f "$W/lat.log"
  h2load --h1 -c10 --rps 100 -D10 --log-file="$W/lat.log" "$@" "$url" >/dev/null 2>&1
  if awk '$2 !~ /^2/ {bad=1} END {exit !bad}' "$W/lat.log"; then
    echo "fixed rate: answers other than 2xx from $url" >&2
    touch "$W/failed"
  fi
  cut -f3 "$W/lat.log" | sort -n | awk '{v[NR]=$1} END {
    printf "%.3f %.3f %.3f %d", v[int(NR*0.50)]/1000, v[int(NR*0.95)]/1000, v[int(NR*0.99)]/1000, NR}'
}
echo
echo "# fixed rate 1,000 req/s for 10 s (h2load --rps), latency in ms; added = proxy - direct"
printf '%-26s %-12s %8s %8s %8s %8s %9s\n' scenario proxy p50 p95 p99 requests added_p95
read -r d50 d95 d99 dn <<<"$(fixed http://127.0.0.1:18080/)"
printf '%-26s %-12s %8s %8s %8s %8s %9s\n' "plaintext, fixed rate" direct "$d50" "$d95" "$d99" "$dn" -
rate_row() { # scenario proxy url
  local p50 p95 p99 n
  read -r p50 p95 p99 n <<<"$(fixed "$3")"
  printf '%-26s %-12s %8s %8s %8s %8s %9s\n' "$1" "$2" "$p50" "$p95" "$p99" "$n" \
    "$(awk -v a="$p95" -v b="$d95" 'BEGIN {printf "%.3f", a-b}')"
}
rate_row "plaintext, fixed rate" nginx http://bench.test:18081/
rate_row "plaintext, fixed rate" haproxy http://bench.test:18082/
rate_row "plaintext, fixed rate" berth+limit http://bench.test:18085/
[ -n "$B" ] && rate_row "plaintext, fixed rate" "$B" http://bench.test:18086/
rate_row "TLS, fixed rate" nginx https://bench.test:18444/
rate_row "TLS, fixed rate" haproxy https://bench.test:18445/
rate_row "TLS, fixed rate" berth+limit https://bench.test:18448/
[ -n "$B" ] && rate_row "TLS, fixed rate" "$B" https://bench.test:18449/
if [ -e "$W/failed" ]; then
  echo "some responses were not 2xx: the figures above are not comparable" >&2
  exit 1
fi
