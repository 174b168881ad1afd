#!/usr/bin/env bash
# The arm64 build and test root on an amd64 machine (issue 18): qemu user emulation from
# bookworm-backports registered with binfmt_misc, and a Debian arm64 minbase root with
# python3, venv, its headers and binutils (what packaging/bundle.sh needs to freeze waitfor).
#
# Usage: bash packaging/arm64-root.sh        prints the root's path on stdout (the last line)
# Environment: WAITFOR_BUILD_CACHE (default /var/cache/waitfor-build), DEBIAN_MIRROR (default:
# the first URIs: line of apt's sources on this machine).
#
# Why backports: bookworm's qemu 7.2 answers prctl(PR_SET_CHILD_SUBREAPER) with EINVAL, which
# waitfor's init mode needs; qemu 10 (bookworm-backports) handles it. The package is fetched
# with apt-get download through a private sources list and lists folder inside the cache, so
# the machine's apt sources are left alone, and unpacked with dpkg-deb -x (not installed).
#
# binfmt_misc flags: F opens the interpreter now (so it works inside chroots and containers
# that do not have it), P keeps argv[0] (a process sees the name it was started with),
# C is not set (credentials of the interpreter, not the binary).
#
# Cached outside the repository (CI runs in a fresh clone): the root by a hash of its recipe
# (suite, variant, packages, RECIPE below), so a machine pays debootstrap's ~6 minutes once.
# The root is made in a temporary folder and renamed when complete: an interrupted run leaves
# no half root behind. Run as root.
set -euo pipefail
CACHE=${WAITFOR_BUILD_CACHE:-/var/cache/waitfor-build}
SUITE=bookworm
PACKAGES=python3,python3-venv,python3-dev,python3-pip,binutils,ca-certificates
# Bump when the way the root is made changes (the hash then names a new root).
RECIPE="arm64 minbase $SUITE $PACKAGES pip.conf-cert v1"
# qemu-user: in qemu 10 (trixie, bookworm-backports) it holds the statically linked
# emulators; qemu-user-static is only a transitional package now.
QEMU_PKG="qemu-user/$SUITE-backports"

log() { echo "arm64-root: $*" >&2; }
die() { log "$*"; exit 3; }
[ "$(id -u)" = 0 ] || die "needs root (binfmt_misc, debootstrap, chroot)"

mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local m
    m=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
    [ -n "$m" ] || m=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)
    echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=$(mirror)
mkdir -p "$CACHE"
exec 9>"$CACHE/arm64-root.lock"
flock 9  # one set-up at a time (parallel CI runs, a test fixture and a build)

# ---------------------------------------------------------------- qemu from backports
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v dpkg-deb >/dev/null || need+=(dpkg)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2; }
fi

QEMU_DIR=$CACHE/qemu
QEMU=$QEMU_DIR/usr/bin/qemu-aarch64
if [ ! -x "$QEMU" ]; then
    log "fetching $QEMU_PKG (apt-get download, private sources list)"
    APT=$CACHE/apt
    rm -rf "$APT" "$QEMU_DIR.tmp"
    mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$QEMU_DIR.tmp"
    echo "deb $MIRROR $SUITE-backports main" > "$APT/sources.list"
    aptopts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o "Dir::Etc::SourceParts=-"
             -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT" -o "APT::Sandbox::User=root")
    apt-get "${aptopts[@]}" update -q >&2
    (cd "$APT/archives" && apt-get "${aptopts[@]}" download "$QEMU_PKG" >&2)
    dpkg-deb -x "$APT"/archives/qemu-user_*.deb "$QEMU_DIR.tmp"
    rm -rf "$QEMU_DIR" "$APT"/archives/*.deb
    mv "$QEMU_DIR.tmp" "$QEMU_DIR"
fi
log "$("$QEMU" --version | head -n1)"

# ---------------------------------------------------------------- binfmt_misc
BINFMT=/proc/sys/fs/binfmt_misc
mountpoint -q "$BINFMT" || mount -t binfmt_misc binfmt_misc "$BINFMT"
entry=$BINFMT/qemu-aarch64
if [ -e "$entry" ] && ! { grep -qx "interpreter $QEMU" "$entry" && grep -q '^flags: .*F' "$entry" \
        && grep -qx enabled "$entry"; }; then
    log "replacing the binfmt_misc entry qemu-aarch64 ($(grep '^interpreter' "$entry"))"
    echo -1 > "$entry"
fi
if [ ! -e "$entry" ]; then
    # The magic and mask from the package's own binfmt.d line (fields 5 and 6); the
    # interpreter is the unpacked emulator itself. qemu sees P mode in AT_FLAGS (kernel 5.12+),
    # so no Debian -binfmt-P wrapper is needed.
    conf=$QEMU_DIR/usr/share/qemu/binfmt.d/qemu-aarch64.conf
    magic=$(cut -d: -f5 "$conf")
    mask=$(cut -d: -f6 "$conf")
    [ -n "$magic" ] && [ -n "$mask" ] || die "no magic/mask in $conf"
    printf '%s\n' ":qemu-aarch64:M::$magic:$mask:$QEMU:PF" > "$BINFMT/register"
    log "registered $QEMU with binfmt_misc (flags PF)"
fi

# ---------------------------------------------------------------- the root
HASH=$(echo "$RECIPE" | sha256sum | cut -c1-16)
ROOT=$CACHE/arm64-root-$HASH
if [ ! -x "$ROOT/usr/bin/python3" ] || [ ! -f "$ROOT/.complete" ]; then
    log "debootstrap --arch=arm64 --variant=minbase $SUITE from $MIRROR (about 6 minutes)"
    t0=$SECONDS
    tmp=$ROOT.tmp
    if [ -d "$tmp" ]; then umount -R "$tmp" 2>/dev/null || true; rm -rf "$tmp"; fi
    debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$MIRROR" \
        > "$CACHE/arm64-debootstrap.log" 2>&1 \
        || { tail -n 30 "$CACHE/arm64-debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/arm64-debootstrap.log)"; }
    # pip inside the root: the host's CA bundle (a TLS-inspecting proxy's CA is in it when
    # the host trusts one) and pip.conf naming it; resolv.conf is copied at every use.
    cp /etc/ssl/certs/ca-certificates.crt "$tmp/etc/ssl/certs/host-ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/host-ca-certificates.crt\ndisable-pip-version-check = true\n' > "$tmp/etc/pip.conf"
    rm -rf "$tmp/var/cache/apt/archives/"*.deb
    date -u +%FT%TZ > "$tmp/.complete"
    mv "$tmp" "$ROOT"
    log "root made in $((SECONDS - t0)) s: $(du -sh "$ROOT" | cut -f1)"
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
echo "$ROOT"
