#!/usr/bin/env bash
# Everything from a fresh Debian machine to a running platform: engine, swarm, Python deps, images, `up`.
# Usage: scripts/up.sh [deploy.py up arguments...]   (run as root)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_install debootstrap ca-certificates openssl maven openjdk-17-jre-headless
ensure_engine
ensure_swarm
ensure_venv "$ROOT/requirements.txt"
cd "$ROOT"
exec "$VENV/bin/python" deploy.py up "$@"
