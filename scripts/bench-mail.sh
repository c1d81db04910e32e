#!/usr/bin/env bash
# The shared mail relay (numbers go to docs/BENCHMARKS.md "Mail relay"): messages per second
# through berth's relay (berth's SASL and policy, OpenDKIM signing, Postfix) against the same
# image's Postfix alone, both relaying to Postfix's smtp-sink on the relay's private network;
# and the relay's memory with 100 and 1,000 tenants' accounts and DKIM keys.
# Then one tenant flooding the relay from its network while another sends from its own
# (FLOOD_CONC=64 connections for FLOOD_S=20 s; STEADY=50 messages one at a time).
# Usage: scripts/bench-mail.sh [MESSAGES=2000] [CONC=8]; FLOOD_ONLY=1 for the flood alone.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-docker.sh >/dev/null
./scripts/build-images.sh mail >/dev/null
export MESSAGES=${1:-2000} CONC=${2:-8} BERTH_BENCH_MAIL=1 OUT_DIR=/tmp/berth-bench-mail
cargo bench --quiet --bench mail
echo "bench-mail: results in $OUT_DIR/results.txt"
