#!/usr/bin/env bash
# The management API and the dashboard under load, on the real engine with N tenants (the demo
# template). Side by side in one run, wrk -t2 -cC for D seconds each, on loopback:
#   - GET /v1/instances/d0001 as acme-style tenant admin (token check, policy, audit layer) and
#     GET /v1/instances (all N) as the operator, over plain TCP;
#   - the same through nginx terminating TLS in front of the plain listener (what an operator
#     had to do before api.tls), and through berth's own TLS listener (api.tls, berth's CA);
#   - the dashboard's overview page (/ui/, N tenants, operator session) and a tenant's page;
#   - CLI wall time of `berth status d0001`: Unix socket vs token over TCP vs token over TLS
#     (median of 30 runs: a process start, a connection, a handshake, one call).
# Usage: scripts/bench-api.sh [N=100] [D=10] [C=16]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
D=${2:-10}
C=${3:-16}
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
./scripts/setup-docker.sh >/dev/null
./scripts/build-images.sh >/dev/null
cargo build --release --quiet
B="$PWD/target/release/berth"
W=$(mktemp -d /tmp/berth-api.XXXX)
PLAIN=127.0.0.1:18790
TLS=127.0.0.1:18791
NGINX=127.0.0.1:18792
cleanup() {
  [ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null && sleep 1 || true
  nginx -c "$W/nginx.conf" -s stop 2>/dev/null || true
  docker ps -aq --filter label=io.berth.namespace=bapi | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter label=io.berth.namespace=bapi | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter label=io.berth.namespace=bapi | xargs -r docker volume rm >/dev/null
}
trap 'cleanup; rm -rf "$W"' EXIT
mkdir -p "$W/instances"
config() { # tcp [tls-lines]
  cat > "$W/berth.yaml" <<YAML
state_dir: state
templates_dir: $PWD/templates
instances_dir: instances
namespace: bapi
admission: {memory_overcommit: 100, disk_overcommit: 100, cpu_overcommit: 100}  # packed past what admission allows by default
api:
  socket: berth.sock
  tcp: $1
${2:-}
network: {subnet_pool: 10.236.0.0/16, subnet_prefix: 28}
ports: {first: 33000, last: 33999}
metrics: {listen: none}
YAML
}
start() {
  setsid "$B" --config "$W/berth.yaml" serve >>"$W/agent.log" 2>&1 < /dev/null &
  AGENT=$!
  until "$B" --config "$W/berth.yaml" reconcile >/dev/null 2>&1; do sleep 0.2; done
}
stop() { kill "$AGENT"; wait "$AGENT" 2>/dev/null || true; AGENT=; }
cli() { "$B" --config "$W/berth.yaml" "$@"; }

config "$PLAIN"
start
for i in $(seq 1 "$N"); do printf 'tenant: d%04d\ntemplate: demo\n' "$i" > "$W/instances/d$(printf %04d "$i").yaml"; done
until [ "$(cli ls -o json | grep -c '"phase": "running"')" -ge "$N" ]; do sleep 5; done
OP=$(cli token create --role operator --expires 1h --name bench-op)
AD=$(cli token create --role tenant-admin --tenant d0001 --expires 1h --name bench-admin)
printf '%s' "$AD" > "$W/ad.token"; chmod 600 "$W/ad.token"

# wrk: "req/s p50_ms p99_ms"
run_wrk() {
  wrk -t2 -c"$C" -d"${D}s" --latency "$@" 2>/dev/null | awk '
    /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    END {printf "%.0f %.3f %.3f %s", rps, ms(p50), ms(p99), (bad ? "non-2xx:" bad : "")}'
}
row() { printf '%-44s %10s %9s %9s %s\n' "$@"; }
echo "# $(date -u +%F) $N tenants; wrk -t2 -c$C, ${D}s per row; loopback; $(nproc) cores"
row scenario req/s p50_ms p99_ms
login() { # base → cookie header for an operator session
  curl -sk -o /dev/null -D - --data-urlencode "token=$OP" "$1/ui/login" | awk -F'[ ;]' '/^set-cookie/ {print $2}'
}

# nginx terminating TLS (a certificate from berth's CA, the same kind api.tls serves) in front of
# the plain listener.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$W/ng.key" -out "$W/ng.pem" 2>/dev/null
cat > "$W/nginx.conf" <<NG
worker_processes 1;
pid $W/nginx.pid;
error_log $W/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  upstream berth { server $PLAIN; keepalive 32; }
  server {
    listen $NGINX ssl;
    ssl_certificate $W/ng.pem; ssl_certificate_key $W/ng.key;
    location / { proxy_pass http://berth; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NG
nginx -c "$W/nginx.conf"

for via in plain nginx; do
  case $via in plain) base="http://$PLAIN" ;; nginx) base="https://$NGINX" ;; esac
  row "GET /v1/instances/d0001 (tenant admin, $via)" $(run_wrk -H "Authorization: Bearer $AD" "$base/v1/instances/d0001")
  row "GET /v1/instances ($N, operator, $via)" $(run_wrk -H "Authorization: Bearer $OP" "$base/v1/instances")
  cookie=$(login "$base")
  row "GET /ui/ overview ($N tenants, $via)" $(run_wrk -H "Cookie: $cookie" "$base/ui/")
  row "GET /ui/t/d0001 tenant page ($via)" $(run_wrk -H "Cookie: $cookie" "$base/ui/t/d0001")
done
cli_ms() { # args… → median wall ms of 30 runs
  for _ in $(seq 30); do
    local t0; t0=$(date +%s%N); "$B" "$@" >/dev/null; echo $(( ($(date +%s%N) - t0) / 1000 ))
  done | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}
SOCK_MS=$(cli_ms --config "$W/berth.yaml" status d0001)
TCP_MS=$(cli_ms --api "$PLAIN" --token-file "$W/ad.token" status d0001)
nginx -c "$W/nginx.conf" -s stop

stop
config "$TLS" "  tls: {names: [localhost, 127.0.0.1]}"
start
base="https://$TLS"
row "GET /v1/instances/d0001 (tenant admin, api.tls)" $(run_wrk -H "Authorization: Bearer $AD" "$base/v1/instances/d0001")
row "GET /v1/instances ($N, operator, api.tls)" $(run_wrk -H "Authorization: Bearer $OP" "$base/v1/instances")
cookie=$(login "$base")
row "GET /ui/ overview ($N tenants, api.tls)" $(run_wrk -H "Cookie: $cookie" "$base/ui/")
row "GET /ui/t/d0001 tenant page (api.tls)" $(run_wrk -H "Cookie: $cookie" "$base/ui/t/d0001")
TLS_MS=$(cli_ms --api "$base" --token-file "$W/ad.token" --ca-file "$W/state/certs/ca/ca.pem" status d0001)
echo "berth status d0001, median of 30 (ms): socket $SOCK_MS, token over TCP $TCP_MS, token over api.tls $TLS_MS"
echo "agent RSS after the run: $(( $(ps -o rss= -p "$AGENT") / 1024 )) MiB"
