#!/usr/bin/env bash
# Every test, from a fresh Debian machine: lint, unit, integration (real Postgres) and e2e (a real swarm).
# Usage: scripts/test.sh [pytest arguments...]   (run as root)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_install debootstrap ca-certificates openssl maven openjdk-17-jre-headless postgresql-15 postgresql-client-15
# the ACME tests' servers, run as host processes: a CA (pebble, pebble-challtestsrv), nginx, BIND
apt_install_no_services pebble nginx bind9
# postgrest-js's compatibility tests run under Node (20 or later) with npm
command -v node >/dev/null 2>&1 || apt_install nodejs npm
ensure_engine
ensure_swarm
ensure_venv "$ROOT/requirements-dev.txt"
cd "$ROOT"
log "ruff"
"$VENV/bin/ruff" check .
log "pytest"
exec "$VENV/bin/pytest" -ra "$@"
