# Shared set-up steps for scripts/up.sh and scripts/test.sh: each is idempotent and fast when already done.
# Sourced, not run. Needs root on Debian (bookworm): it installs what is missing with apt-get.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAWMILL_VENV:-$ROOT/.venv}"

log() { printf '→ %s\n' "$*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} with apt-get"
  if [ -z "${SAWMILL_APT_UPDATED:-}" ]; then apt-get update -q >/dev/null; SAWMILL_APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# apt_install, with the packages' services neither started nor enabled: the tests run nginx and BIND as their own
# processes, and as system services they would hold ports 80 and 53 (the platform's door needs 80).
apt_install_no_services() {
  local policy=/usr/sbin/policy-rc.d created=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created=1
  fi
  local rc=0
  apt_install "$@" || rc=$?
  if [ -n "$created" ]; then rm -f "$policy"; fi
  if [ -d /run/systemd/system ]; then # systemd runs this machine (even "degraded")
    systemctl disable --now --quiet nginx named 2>/dev/null || true
  fi
  return "$rc"
}

ensure_engine() {
  if docker info >/dev/null 2>&1; then return 0; fi
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  log "starting the Docker engine"
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker
  else
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "the Docker engine did not answer within 30 s; see /var/log/dockerd.log" >&2
  return 1
}

ensure_swarm() {
  local state
  state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
  if [ "$state" != "active" ]; then
    log "initialising a single-node swarm"
    docker swarm init --advertise-addr "${SAWMILL_ADVERTISE_ADDR:-127.0.0.1}" >/dev/null
  fi
}

ensure_venv() {  # $1: requirements file
  local req="$1" stamp
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
  fi
  # every requirements file in the repository, so a pin changed anywhere (even one pulled in by -r) reinstalls
  stamp="$VENV/.installed-$(find "$ROOT" -name 'requirements*.txt' -not -path "$VENV/*" -not -path "$ROOT/build/*" -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-12)-$(basename "$req")"
  if [ ! -f "$stamp" ]; then
    log "installing Python dependencies into $VENV"
    "$VENV/bin/pip" install -q -r "$req"
    touch "$stamp"
  fi
}
