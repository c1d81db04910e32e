#!/usr/bin/env bash
# One command on a fresh Debian 12 machine (as root): installs and starts Docker, builds the
# images locally, builds berth, starts the agent with ./berth.yaml and the example instances in
# ./instances, waits until every tenant runs, and shows them.
#   Stop the agent:  kill "$(cat .berth-demo/agent.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "demo: cargo not found; install Rust >= 1.89 (rustup) first" >&2; exit 1; }
./scripts/setup-docker.sh
./scripts/build-images.sh mail
echo "demo: building berth (release)"
cargo build --release --quiet
berth="$PWD/target/release/berth"

mkdir -p .berth-demo
# A pid file left from before a reboot can name another process now: only a berth counts.
if [ -f .berth-demo/agent.pid ] && tr '\0' ' ' < "/proc/$(cat .berth-demo/agent.pid)/cmdline" 2>/dev/null | grep -q "berth.*serve"; then
  echo "demo: agent already running (pid $(cat .berth-demo/agent.pid))"
else
  setsid "$berth" --config berth.yaml serve >>.berth-demo/agent.log 2>&1 < /dev/null &
  echo $! > .berth-demo/agent.pid
  echo "demo: agent started (pid $!, log .berth-demo/agent.log)"
fi

for _ in $(seq 1 60); do "$berth" --config berth.yaml reconcile >/dev/null 2>&1 && break; sleep 1; done
echo "demo: waiting for the example tenants"
for _ in $(seq 1 180); do
  "$berth" --config berth.yaml reconcile >/dev/null
  phases=$("$berth" --config berth.yaml ls -o json | grep -o '"phase": *"[a-z]*"' | sort -u)
  if [ "$phases" = '"phase": "running"' ]; then break; fi
  sleep 1
done
"$berth" --config berth.yaml ls
echo
echo "demo: each app at its own address on its tenant's network (nothing is published on the host)"
for at in $("$berth" --config berth.yaml ls -o json | grep -o '"address": *"[0-9.:]*"' | grep -oE '[0-9]+(\.[0-9]+){3}:[0-9]+'); do
  printf '%s  %s  |  /cgi-bin/db: %s\n' "$at" \
    "$(curl -fsS "http://$at/" | grep -o 'tenant=[a-z0-9-]* version=[0-9]*')" \
    "$(curl -fsS "http://$at/cgi-bin/db")"
done
echo
"$berth" --config berth.yaml ca > .berth-demo/ca.pem
echo "demo: through the HTTPS proxy (127.0.0.1:8443, certificates from berth's CA in .berth-demo/ca.pem)"
for t in $("$berth" --config berth.yaml ls -o json | grep -o '"tenant": *"[a-z0-9-]*"' | grep -o '"[a-z0-9-]*"$' | tr -d '"' | sort -u); do
  host="$t.apps.example.test"
  printf 'https://%s:8443/  %s\n' "$host" \
    "$(curl -fsS --cacert .berth-demo/ca.pem --resolve "$host:8443:127.0.0.1" "https://$host:8443/" | grep -o 'tenant=[a-z0-9-]* version=[0-9]*')"
done
"$berth" --config berth.yaml cert ls
echo
echo "demo: acme's page sends its admin a message through the shared mail relay"
# The relay starts after the tenants' first pass: the page answers 502 until it is up.
acme_at=$("$berth" --config berth.yaml status acme -o json | grep -o '"address": *"[0-9.:]*"' | head -n1 | grep -oE '[0-9]+(\.[0-9]+){3}:[0-9]+')
for _ in $(seq 1 30); do
  curl -fsS -X POST "http://$acme_at/cgi-bin/mail" 2>/dev/null && break
  sleep 1
done
sleep 3
"$berth" --config berth.yaml mail acme
echo
echo "demo: the DKIM record acme publishes"
"$berth" --config berth.yaml mail dns acme
echo
echo "demo: try  curl --cacert .berth-demo/ca.pem --resolve acme.apps.example.test:8443:127.0.0.1 https://acme.apps.example.test:8443/"
echo "      or   $berth --config berth.yaml status acme"
echo "      or   $berth --config berth.yaml add demo1 --template demo --set site_title=Hello --wait"
