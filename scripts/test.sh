#!/usr/bin/env bash
# Every test, from a fresh Debian machine: lint, unit, integration (real Postgres) and e2e (a real swarm).
# Usage: scripts/test.sh [pytest arguments...]   (run as root)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_install debootstrap ca-certificates openssl maven openjdk-17-jre-headless postgresql-15 postgresql-client-15 chromium chromium-driver
# tests/nodes reach their simulated hosts with ssh, as deploy.py reaches real ones
apt_install openssh-client
# the ACME tests' servers, run as host processes: a CA (pebble, pebble-challtestsrv), nginx, BIND
apt_install_no_services pebble nginx bind9
# postgrest-js's compatibility tests run under Node (20 or later) with npm
command -v node >/dev/null 2>&1 || apt_install nodejs npm
# terraform/ and .gitlab-ci.yml: cloud-init's schema checker (never run at this machine's boot), gitlab-ci-local's
# shell executor needs rsync and its re2 module a C++ compiler; checkov and gitlab-ci-local go to ~/.cache/sawmill/tools
apt_install cloud-init rsync g++ make
touch /etc/cloud/cloud-init.disabled
ensure_engine
ensure_swarm
ensure_venv "$ROOT/requirements-dev.txt"
ensure_checkov # after ensure_venv, which installs python3-venv where it is missing
ensure_gitlab_ci_local
report_terraform
cd "$ROOT"
log "ruff"
"$VENV/bin/ruff" check .
log "pytest"
exec "$VENV/bin/pytest" -ra "$@"
