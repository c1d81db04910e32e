# Sourced by bench-proxy.sh and profile-proxy.sh: the loopback backend (nginx serving
# $W/www) and the nginx and haproxy proxies berth is measured against, on the same ports.
# proxy_configs DIR WORKERS DAEMON  (DAEMON=off runs nginx in the foreground, one process)
proxy_configs() {
  local W=$1 workers=$2 daemon=$3 master=on
  [ "$daemon" = off ] && master=off
  cat > "$W/backend.conf" <<NG
worker_processes 1; pid $W/backend.pid; error_log $W/backend.err; daemon on;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:18080; root $W/www; } }
NG
  cat > "$W/proxy.conf" <<NG
worker_processes $workers; master_process $master; daemon $daemon; pid $W/proxy.pid; error_log $W/proxy.err;
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
  nbthread $workers
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
}
