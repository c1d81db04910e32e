#!/usr/bin/env bash
# Side-by-side proxy benchmark on loopback: berth's edge proxy, nginx and haproxy (Debian
# packages) in front of the same backend (nginx serving a small static page), driven by the
# same wrk/h2load load. Prints req/s, p50/p99 latency and proxy RSS, plus ratios to nginx.
# berth runs with 1,000 tenant certificates loaded. Usage: scripts/bench-proxy.sh [seconds]
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
cargo build --release --bench proxy -q
BIN=$(ls -t target/release/deps/proxy-* | grep -v '\.d$' | head -1)
W=$(mktemp -d /tmp/berth-bench.XXXX)
trap 'kill $(jobs -p) 2>/dev/null; nginx -c $W/backend.conf -s stop 2>/dev/null; nginx -c $W/proxy.conf -s stop 2>/dev/null; true' EXIT
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

cat > "$W/backend.conf" <<NG
worker_processes 1; pid $W/backend.pid; error_log $W/backend.err; daemon on;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:18080; root $W/www; } }
NG
cat > "$W/proxy.conf" <<NG
worker_processes 2; pid $W/proxy.pid; error_log $W/proxy.err; daemon on;
events { worker_connections 4096; }
http { access_log off;
  upstream b { server 127.0.0.1:18080; keepalive 256; }
  server { listen 127.0.0.1:18081; listen 127.0.0.1:18444 ssl http2;
    ssl_certificate $W/bench.pem; ssl_certificate_key $W/bench.key; ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto \$scheme; } } }
NG
cat > "$W/haproxy.cfg" <<HA
global
  nbthread 2
  maxconn 8192
  tune.ssl.cachesize 0
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option forwardfor
  http-reuse always
frontend f
  bind 127.0.0.1:18082
  bind 127.0.0.1:18445 ssl crt $W/bench-combined.pem alpn h2,http/1.1 no-tls-tickets
  default_backend b
backend b
  server s1 127.0.0.1:18080
HA
nginx -c "$W/backend.conf"
nginx -c "$W/proxy.conf"
haproxy -f "$W/haproxy.cfg" -D -p "$W/haproxy.pid"
sleep 1

rss() { case $1 in
  berth) ps -o rss= -p $BERTH ;;
  berth+log) ps -o rss= -p $BERTH_AL ;;
  berth+limit) ps -o rss= -p $BERTH_RL ;;
  nginx) ps -o rss= --ppid "$(cat $W/proxy.pid)" | awk '{s+=$1} END {print s}' ;;
  haproxy) ps -o rss= -p "$(cat $W/haproxy.pid)" ;;
  direct) echo 0 ;; esac; }

# wrk: "req/s p50_ms p99_ms"
run_wrk() {
  wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "$@" 2>/dev/null | awk '
    /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    END {printf "%.0f %.3f %.3f", rps, ms(p50), ms(p99)}'
}
run_h2() {
  h2load -t2 -c"$CONNS" -m10 -D"$DUR" "$1" 2>/dev/null | awk '/^finished in/ {rps=$4} /^time for request/ {mean=$6} END {printf "%.0f %s -", rps, mean}'
}

echo "# $(date -u +%F) ${DUR}s per run, $CONNS connections, wrk -t2 / h2load -t2 -m10 (h2 rows: p50 column is the mean)"
printf '%-32s %-8s %10s %9s %9s %9s %8s\n' scenario proxy req/s p50_ms p99_ms rss_MB vs_nginx
report() { # scenario proxy "rps p50 p99"
  read -r rps p50 p99 <<<"$3"
  local mb=$(( $(rss "$2") / 1024 ))
  [ "$2" = nginx ] && NGINX_RPS=$rps
  ratio=$(awk -v a="$rps" -v b="${NGINX_RPS:-0}" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "-" }')
  printf '%-32s %-8s %10s %9s %9s %9s %8s\n' "$1" "$2" "$rps" "$p50" "$p99" "$mb" "$ratio"
}
report "plaintext keep-alive" direct "$(run_wrk http://127.0.0.1:18080/)"
report "plaintext keep-alive" nginx "$(run_wrk -H 'Host: bench.test' http://127.0.0.1:18081/)"
report "plaintext keep-alive" haproxy "$(run_wrk -H 'Host: bench.test' http://127.0.0.1:18082/)"
report "plaintext keep-alive" berth "$(run_wrk -H 'Host: bench.test' http://127.0.0.1:18083/)"
report "plaintext keep-alive" berth+log "$(run_wrk -H 'Host: bench.test' http://127.0.0.1:18084/)"
report "plaintext keep-alive" berth+limit "$(run_wrk -H 'Host: bench.test' http://127.0.0.1:18085/)"
report "plaintext keep-alive" berth "$(run_wrk -H 'Host: bench.test' http://127.0.0.1:18083/)"
report "TLS keep-alive" nginx "$(run_wrk -H 'Host: bench.test' https://bench.test:18444/)"
report "TLS keep-alive" haproxy "$(run_wrk -H 'Host: bench.test' https://bench.test:18445/)"
report "TLS keep-alive (1000 certs)" berth "$(run_wrk -H 'Host: bench.test' https://bench.test:18446/)"
report "TLS keep-alive (1000 certs)" berth+log "$(run_wrk -H 'Host: bench.test' https://bench.test:18447/)"
report "TLS new conn per request" nginx "$(run_wrk -H 'Host: bench.test' -H 'Connection: close' https://bench.test:18444/)"
report "TLS new conn per request" haproxy "$(run_wrk -H 'Host: bench.test' -H 'Connection: close' https://bench.test:18445/)"
report "TLS new conn (1000 certs)" berth "$(run_wrk -H 'Host: bench.test' -H 'Connection: close' https://bench.test:18446/)"
report "h2 over TLS (h2load -m10)" nginx "$(run_h2 https://bench.test:18444/)"
report "h2 over TLS (h2load -m10)" haproxy "$(run_h2 https://bench.test:18445/)"
report "h2 over TLS (h2load -m10)" berth "$(run_h2 https://bench.test:18446/)"
