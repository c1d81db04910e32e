#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine as root: sets up Docker and the local
# images, then runs formatting and lint checks, unit tests, and the real-engine integration
# tests (which fail rather than skip: BERTH_REQUIRE_DOCKER=1).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-docker.sh
./scripts/build-images.sh systemd lamp osticket swarm mail
# promtool and a real Prometheus for the metrics test (tests only: the demo does not need them).
# Debian starts the packaged server on every interface; the test runs its own on loopback.
if ! command -v prometheus >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
# A real registry on loopback for the image-pull test (distribution 2.8) and htpasswd for its
# users; the packaged registry service is disabled, the test starts its own.
if ! command -v docker-registry >/dev/null 2>&1 || ! command -v htpasswd >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry apache2-utils >/dev/null
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
# restic (berth's off-host backups run it; the test reads what berth wrote with it) and rclone
# (`rclone serve restic --append-only`, the append-only REST server) for tests/offsite.rs.
if ! command -v restic >/dev/null 2>&1 || ! command -v rclone >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends restic rclone >/dev/null
fi
# Chromium and its WebDriver for the dashboard's browser test (tests/dashboard.rs).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
# schemathesis and openapi-spec-validator (PyPI) for the OpenAPI test (tests/openapi.rs) and
# kubernetes-validate for the Kubernetes export (tests/kubernetes.rs), moto's S3 server for an
# off-host repository on loopback (tests/offsite.rs), in a virtualenv under
# target/ so the system's Python is left alone; aiosmtpd (the internet's mail servers, a sink
# on a test host) and dkimpy (signature checks) for the mail relay (tests/mail.rs).
if [ ! -x target/py/bin/st ] || [ ! -x target/py/bin/openapi-spec-validator ] || [ ! -x target/py/bin/kubernetes-validate ] \
   || ! target/py/bin/python -c 'import aiosmtpd, dkim' 2>/dev/null || [ ! -x target/py/bin/moto_server ]; then
  if ! python3 -m venv target/py >/dev/null 2>&1; then
    rm -rf target/py  # a half-made venv (no ensurepip) is made again once python3-venv is in
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv target/py
  fi
  target/py/bin/pip install -q --disable-pip-version-check schemathesis==4.32.5 openapi-spec-validator==0.9.0 kubernetes-validate==1.37.0 \
    aiosmtpd==1.4.6 dkimpy==1.1.8 'moto[server]==5.2.1'
fi
export BERTH_REQUIRE_DOCKER=1
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo run --quiet -- validate .
# --no-fail-fast: every test binary runs, so one failure cannot hide the others.
cargo test --no-fail-fast 2>&1
