#!/usr/bin/env bash
# Build the Debian bookworm base image that every locally built Sawmill image starts FROM.
#
#   scripts/build-base.sh [--force] [TAG]        (default TAG: sawmill/base:bookworm)
#
# No registry is needed: the root filesystem comes from debootstrap against the Debian mirror
# that the host's own apt configuration uses, and is turned into an image with `docker import`.
# The host's extra CA certificates (/usr/local/share/ca-certificates/*.crt) are trusted inside the
# image so that pip/curl in image builds work behind a TLS-intercepting proxy; they never enter the repo.
set -euo pipefail

SUITE=bookworm
TAG=sawmill/base:bookworm
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "build-base: unknown option: $arg" >&2; exit 2 ;;
        *) TAG=$arg ;;
    esac
done

log() { printf '[build-base %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'build-base: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot need it)"
command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine"

if [ "$FORCE" -eq 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    log "image $TAG already exists; nothing to do (use --force to rebuild)"
    exit 0
fi

# First URIs: of a "Types: deb" stanza whose Suites include $1, from deb822 .sources files.
mirror_from_sources() {
    local suite=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$suite" '
            function flush() {
                if (is_deb && has_suite && uri != "" && enabled) { print uri; found = 1; exit }
                is_deb = 0; has_suite = 0; uri = ""; enabled = 1
            }
            BEGIN { enabled = 1 }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                key = tolower($1)
                if (key == "types:")   { for (i = 2; i <= NF; i++) if ($i == "deb") is_deb = 1 }
                if (key == "suites:")  { for (i = 2; i <= NF; i++) if ($i == suite) has_suite = 1 }
                if (key == "uris:" && uri == "") uri = $2
                if (key == "enabled:" && tolower($2) == "no") enabled = 0
            }
            END { if (!found) flush() }
        ' "$f"
    done | head -n1
}

# First "deb [opts] URL $1 ..." line of /etc/apt/sources.list.
mirror_from_list() {
    local suite=$1
    [ -f /etc/apt/sources.list ] || return 0
    awk -v suite="$suite" '
        $1 != "deb" { next }
        {
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            if ($(i + 1) == suite) { print $i; exit }
        }
    ' /etc/apt/sources.list
}

MIRROR=$(mirror_from_sources "$SUITE")
[ -n "$MIRROR" ] || MIRROR=$(mirror_from_list "$SUITE")
[ -n "$MIRROR" ] || die "no Debian mirror for '$SUITE' in the host's apt config
  (looked for a 'Types: deb' stanza with suite $SUITE in /etc/apt/sources.list.d/*.sources
   and a 'deb URL $SUITE' line in /etc/apt/sources.list)"
SECURITY_MIRROR=$(mirror_from_sources "$SUITE-security")
[ -n "$SECURITY_MIRROR" ] || SECURITY_MIRROR=$(mirror_from_list "$SUITE-security")

if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

WORK=$(mktemp -d /var/tmp/sawmill-base.XXXXXX)
ROOTFS=$WORK/rootfs
cleanup() {
    # debootstrap mounts proc/sys inside the target; never delete through a live mount.
    local m
    if [ -d "$ROOTFS" ]; then
        awk -v r="$ROOTFS" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r m; do umount -l "$m" || true; done
    fi
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

START=$SECONDS
log "debootstrap $SUITE (minbase) from $MIRROR"
if ! debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOTFS" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1; then
    tail -n 20 "$WORK/debootstrap.log" >&2
    [ -f "$ROOTFS/debootstrap/debootstrap.log" ] && tail -n 20 "$ROOTFS/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi
log "debootstrap done ($((SECONDS - START)) s)"

log "configuring apt and dpkg for small images"
cat >"$ROOTFS/etc/apt/apt.conf.d/90sawmill" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo force-unsafe-io >"$ROOTFS/etc/dpkg/dpkg.cfg.d/90sawmill-unsafe-io"
# As in Debian's official images: package scripts must not start daemons inside an image build.
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/90sawmill-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
# Same mirror as the host, with updates and (if the host has one) security.
{
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$MIRROR" "$SUITE" "$SUITE"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$SECURITY_MIRROR" ]; then
        printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$SECURITY_MIRROR" "$SUITE"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
} >"$ROOTFS/etc/apt/sources.list.d/debian.sources"
rm -f "$ROOTFS/etc/apt/sources.list"

shopt -s nullglob
CERTS=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob
if [ "${#CERTS[@]}" -gt 0 ]; then
    log "trusting ${#CERTS[@]} extra CA certificate(s) from the host"
    mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
    cp "${CERTS[@]}" "$ROOTFS/usr/local/share/ca-certificates/"
fi
# (its "rehash: skipping ca-certificates.crt" warning is normal noise; show output only on failure)
chroot "$ROOTFS" update-ca-certificates >"$WORK/ca.log" 2>&1 || { cat "$WORK/ca.log" >&2; die "update-ca-certificates failed"; }

log "trimming caches, logs and host-specific files"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* \
    "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old "$ROOTFS"/tmp/* \
    "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
# What the dpkg excludes above would have left out, for the packages debootstrap installed before them.
find "$ROOTFS/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# Docker supplies these at run time; don't bake the build host's values into the image.
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/hostname"
mkdir -p "$ROOTFS/var/lib/apt/lists/partial"

log "importing into docker as $TAG"
tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -C "$ROOTFS" -c . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["bash"]' \
        --message "debootstrap --variant=minbase $SUITE" \
        - "$TAG" >/dev/null
SIZE=$(docker image inspect --format '{{.Size}}' "$TAG")
log "built $TAG ($((SIZE / 1000000)) MB) in $((SECONDS - START)) s"
