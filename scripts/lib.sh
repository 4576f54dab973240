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

# A single-node swarm whose own ports (2377 control, 7946 gossip) listen on loopback only: nothing outside this
# machine can reach them. (The overlay data port 4789/udp is a kernel VXLAN socket on every interface whatever the
# flags say; only a firewall closes it.) Verified on a simulated node: tests/nodes/test_single_node.py.
ensure_swarm() {
  local state address="${SAWMILL_ADVERTISE_ADDR:-127.0.0.1}"
  state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
  if [ "$state" != "active" ]; then
    log "initialising a single-node swarm listening on $address"
    docker swarm init --advertise-addr "$address" --listen-addr "$address:2377" --data-path-addr "$address" >/dev/null
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

# Tools the tests of terraform/ and .gitlab-ci.yml use, each in a folder of its own, outside the repository so
# that a fresh clone on the same machine reuses them (gitlab-ci-local compiles a C++ module for minutes).
TOOLS="${SAWMILL_TOOLS:-$HOME/.cache/sawmill/tools}"
GITLAB_CI_LOCAL_VERSION=4.60.0 # the last release that runs on Node 20 (4.75 needs Node 22)

# checkov in its own virtual environment: it depends on bc-python-hcl2, whose module is named `hcl2` like the one
# python-hcl2 (requirements-dev.txt) installs, so the two cannot share the project's.
ensure_checkov() {
  local req="$ROOT/requirements-checkov.txt" stamp
  stamp="$TOOLS/checkov/.installed-$(sha256sum "$req" | cut -c1-12)"
  [ -f "$stamp" ] && return 0
  log "installing checkov into $TOOLS/checkov"
  python3 -m venv "$TOOLS/checkov"
  "$TOOLS/checkov/bin/pip" install -q -r "$req"
  touch "$stamp"
}

ensure_gitlab_ci_local() {
  local dir="$TOOLS/gitlab-ci-local"
  if [ "$("$dir/node_modules/.bin/gitlab-ci-local" --version 2>/dev/null)" = "$GITLAB_CI_LOCAL_VERSION" ]; then
    return 0
  fi
  log "installing gitlab-ci-local $GITLAB_CI_LOCAL_VERSION with npm into $dir (compiles its re2 module: minutes)"
  # re2's installer would first try to download a prebuilt binary from outside any registry: build it at once
  DEVELOPMENT_SKIP_GETTING_ASSET=1 npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    "gitlab-ci-local@$GITLAB_CI_LOCAL_VERSION" >/dev/null
}

# The terraform tests need the binary, which no package registry reached here has: say so, and go on.
report_terraform() {
  if command -v terraform >/dev/null 2>&1; then return 0; fi
  log "terraform is not installed: its checks (tests/integration/test_terraform.py) will be reported as NOT RUN;" \
    "install Terraform >= 1.5 from HashiCorp's releases and put it on PATH to run them"
}
