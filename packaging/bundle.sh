#!/usr/bin/env bash
# Build the self-contained bundles of waitfor (issue 9): a Python interpreter, waitfor and
# its dependencies frozen by PyInstaller (https://pyinstaller.org) in one-folder mode, so
# that an image without Python runs waitfor with one `COPY`:
#
#   dist/waitfor-slim/   core dependencies; the stdlib kinds (tcp, http(s), unix, file, dns, command)
#   dist/waitfor-full/   the same plus every driver extra (postgres, mysql, redis, amqp, mqtt, nats, grpc)
#   dist/waitfor-slim.tar.gz, dist/waitfor-full.tar.gz
#   dist/waitfor-slim.cdx.json, ...  the bill of materials (CycloneDX, packaging/sbom.py)
#   dist/SHA256SUMS      the tarballs and SBOMs in dist/ (sha256sum -c SHA256SUMS)
#
# With --arch arm64 on another architecture (issue 18): dist/waitfor-slim-arm64/ and
# dist/waitfor-full-arm64/ (and their .tar.gz, .cdx.json), frozen by this same script run
# inside a Debian arm64 root under qemu user emulation (packaging/arm64-root.sh). Names carry
# the architecture except amd64's, which keep the names they had.
#
# Each folder has the executable `waitfor` at its top: `dist/waitfor-slim/waitfor run ... -- app`,
# its SBOM as sbom.cdx.json and a SHA256SUMS of its own files. One folder, not PyInstaller's
# one-file mode: a one-file build unpacks itself into /tmp at every start (slow, needs a
# writable /tmp, and runs the program as a child of a bootloader process, which would then
# be PID 1 instead of waitfor).
#
# Usage: bash packaging/bundle.sh [--force] [--arch amd64|arm64]
# Environment: PYTHON (the interpreter to freeze; default python3, needs its shared
# libpython, as pyenv's --enable-shared and Debian's python3 have), WAITFOR_BUNDLE_WORK
# (build folder; default build/bundle), WAITFOR_BUILD_CACHE (default
# /var/cache/waitfor-build when it is writable, else ~/.cache/waitfor-build; `none`: no
# cache outside dist/), SOURCE_DATE_EPOCH (default: the time of the last commit that changed
# the sources, else 0; the time stamps of the .pyc headers, the tarballs and the SBOM).
#
# Cached: the build venv by its requirements, each bundle by a hash of its inputs (waitfor/,
# bin/waitfor, pyproject.toml, packaging/, the interpreter's version, the architecture), in
# dist/ and outside the repository ($WAITFOR_BUILD_CACHE/bundles/NAME-HASH), so a fresh clone
# of the same inputs copies the bundles instead of freezing them again; an unchanged second
# run takes well under a second. Needs PyPI (or a pip config that reaches it) the first time.
#
# Reproducible: the sources are staged with one mtime (SOURCE_DATE_EPOCH), PyInstaller runs
# with PYTHONHASHSEED=0, the tarballs are made with sorted names, fixed owner and mtime and
# `gzip -n`. Two builds of the same inputs give the same bytes, also from two checkouts with
# their own build venvs; what still differs, and why, is in BENCHMARKS.md ("Bundle
# reproducibility").
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
WORK=${WAITFOR_BUNDLE_WORK:-$REPO/build/bundle}
DIST=$REPO/dist
FORCE=
ARCH=
while [ $# -gt 0 ]; do
    case $1 in
        --force) FORCE=--force ;;
        --arch) ARCH=${2:?--arch needs amd64 or arm64}; shift ;;
        --arch=*) ARCH=${1#--arch=} ;;
        *) echo "bundle: unknown argument $1 (usage: bundle.sh [--force] [--arch amd64|arm64])" >&2; exit 2 ;;
    esac
    shift
done
# The freezer, pinned to a major version (its hooks and bootloader behaviour are what the
# tests check). pyinstaller-hooks-contrib comes with it and has the hooks for grpc.
# cyclonedx-bom brings cyclonedx-python-lib, which writes the SBOM (packaging/sbom.py).
FREEZER="pyinstaller>=6.3,<7"
SBOM_TOOL="cyclonedx-bom>=4,<8"

log() { echo "bundle: $*" >&2; }

native=$(dpkg --print-architecture 2>/dev/null || uname -m)
case $native in x86_64) native=amd64 ;; aarch64) native=arm64 ;; esac
ARCH=${ARCH:-$native}
case $ARCH in amd64 | arm64) ;; *) log "--arch $ARCH: only amd64 and arm64"; exit 2 ;; esac
SUFFIX=$([ "$ARCH" = amd64 ] || echo "-$ARCH")
if [ -n "${WAITFOR_BUILD_CACHE:-}" ]; then CACHE=$WAITFOR_BUILD_CACHE
elif mkdir -p /var/cache/waitfor-build 2>/dev/null && [ -w /var/cache/waitfor-build ]; then CACHE=/var/cache/waitfor-build
else CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/waitfor-build
fi
SOURCES=(waitfor packaging bin/waitfor pyproject.toml)  # what the bundle is made of (hashed)
# The time of the last commit that changed them (not of the last commit: a commit of tests
# alone must not make a new bundle), 0 outside a git checkout.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct -- "${SOURCES[@]}" 2>/dev/null || true)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}

inputs_hash() {  # inputs_hash WHAT-ELSE: every file that goes into a bundle, by content
    # (not by mtime: a fresh clone must hit), and the interpreter or the root it comes from.
    {
        echo "$1 $SOURCE_DATE_EPOCH"
        find "${SOURCES[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
            | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
}

cached() {  # cached NAME: the bundle and its tarball were built from these inputs
    [ "$FORCE" != --force ] && [ -x "$DIST/$1/waitfor" ] && [ -f "$DIST/$1.tar.gz" ] \
        && [ "$(cat "$DIST/$1/.inputs-hash" 2>/dev/null)" = "$HASH" ]
}
from_cache() {  # from_cache NAME: copy a bundle of these inputs from outside the repository
    local c=$CACHE/bundles/$1-$HASH
    [ "$CACHE" != none ] && [ "$FORCE" != --force ] && [ -f "$c/.complete" ] || return 1
    mkdir -p "$DIST"
    rm -rf "${DIST:?}/$1" "$DIST/$1".*
    cp -a "$c/$1" "$c/$1.tar.gz" "$c/$1.cdx.json" "$DIST/"
    log "dist/$1 copied from $c"
}
to_cache() {  # to_cache NAME: keep a finished bundle outside the repository
    local c=$CACHE/bundles/$1-$HASH
    [ "$CACHE" != none ] && mkdir -p "$CACHE/bundles" 2>/dev/null || return 0
    rm -rf "$c.tmp" && mkdir -p "$c.tmp" && cp -a "$DIST/$1" "$DIST/$1.tar.gz" "$DIST/$1.cdx.json" "$c.tmp/" \
        && touch "$c.tmp/.complete" && rm -rf "$c" && mv "$c.tmp" "$c" || log "could not cache $1 in $c"
}
sums() {  # dist/SHA256SUMS: every tarball and SBOM in dist/
    (cd "$DIST" && find . -maxdepth 1 \( -name '*.tar.gz' -o -name '*.cdx.json' \) -printf '%f\n' \
        | LC_ALL=C sort | xargs -r sha256sum > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
}
up_to_date() {
    local ok=0 n
    for n in waitfor-slim$SUFFIX waitfor-full$SUFFIX; do
        cached "$n" || from_cache "$n" || ok=1
    done
    return $ok
}

# ---------------------------------------------------------------- another architecture
if [ "$ARCH" != "$native" ]; then
    [ "$ARCH" = arm64 ] && [ "$native" = amd64 ] || { log "--arch $ARCH on $native: not supported"; exit 2; }
    ROOT=$(bash packaging/arm64-root.sh | tail -n1) || { log "no arm64 root (packaging/arm64-root.sh)"; exit 3; }
    HASH=$(inputs_hash "arm64 ${ROOT##*/}")
    if up_to_date; then
        sums
        log "dist/waitfor-slim$SUFFIX and dist/waitfor-full$SUFFIX are up to date ($HASH)"
        exit 0
    fi
    # This script again, inside the root (packaging/arm64-chroot.sh: its mounts live in a
    # private mount namespace and end with it): the sources staged in ROOT/src, its build
    # venv kept in ROOT/var/cache/waitfor-bundle between builds.
    exec 8>"$CACHE/arm64-build.lock"
    flock 8
    if up_to_date; then  # built by whoever held the lock (CI's background build, a test)
        sums
        log "dist/waitfor-slim$SUFFIX and dist/waitfor-full$SUFFIX were built meanwhile ($HASH)"
        exit 0
    fi
    rm -rf "$ROOT/src/waitfor" && mkdir -p "$ROOT/src/waitfor"
    tar -c --exclude=__pycache__ "${SOURCES[@]}" README.md | tar -x -C "$ROOT/src/waitfor"
    log "freezing the arm64 bundles inside $ROOT (under qemu: about 8 minutes, more on a loaded machine)"
    t0=$SECONDS
    bash packaging/arm64-chroot.sh "$ROOT" SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" \
        WAITFOR_BUNDLE_WORK=/var/cache/waitfor-bundle WAITFOR_BUILD_CACHE=none PYTHON=/usr/bin/python3 \
        bash /src/waitfor/packaging/bundle.sh $FORCE
    mkdir -p "$DIST"
    for n in waitfor-slim$SUFFIX waitfor-full$SUFFIX; do
        rm -rf "${DIST:?}/$n" "$DIST/$n".*
        cp -a "$ROOT/src/waitfor/dist/$n" "$ROOT/src/waitfor/dist/$n.tar.gz" "$ROOT/src/waitfor/dist/$n.cdx.json" "$DIST/"
        echo "$HASH" > "$DIST/$n/.inputs-hash"
        to_cache "$n"
    done
    sums
    log "arm64 bundles in $((SECONDS - t0)) s"
    exit 0
fi

pyver=$("$PYTHON" -c 'import sys, sysconfig; print("%d.%d.%d" % sys.version_info[:3], sysconfig.get_config_var("Py_ENABLE_SHARED"))')
HASH=$(inputs_hash "$pyver $("$PYTHON" -c 'import sys; print(sys.executable)')")
if up_to_date; then
    sums
    log "dist/waitfor-slim$SUFFIX and dist/waitfor-full$SUFFIX are up to date ($HASH)"
    exit 0
fi

# ---------------------------------------------------------------- the build venv
VENV=$WORK/venv
venv_key=$(printf '%s\n%s\n%s\n' "$pyver" "$FREEZER" "$SBOM_TOOL" | cat - pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.key" 2>/dev/null)" != "$venv_key" ]; then
    log "creating the build venv (PyInstaller, waitfor's dependencies and every driver extra)"
    rm -rf "$VENV"
    mkdir -p "$WORK"
    "$PYTHON" -m venv "$VENV"
    # pip's log goes to a file, shown when it fails (a pip.conf with unreachable indexes
    # makes pip warn on every package).
    if ! { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$FREEZER" "$SBOM_TOOL" "$REPO[all]" \
            && "$VENV/bin/python" -m pip uninstall -q -y waitfor; } > "$WORK/pip.log" 2>&1; then
        grep -v 'is ignored: it is neither a file nor a directory' "$WORK/pip.log" >&2
        log "could not install PyInstaller and the dependencies into $VENV (log: $WORK/pip.log)"
        exit 3
    fi
    # waitfor itself is frozen from this checkout (--paths below), never from site-packages.
    echo "$venv_key" > "$VENV/.key"
fi
log "$("$VENV/bin/pyinstaller" --version | sed 's/^/PyInstaller /'), Python $pyver"

# ---------------------------------------------------------------- the bundles
# The sources staged with one mtime: PyInstaller stores each module's source mtime in its
# .pyc header, and a fresh clone's files have the clone's time.
SRC=$WORK/src
rm -rf "$SRC" && mkdir -p "$SRC"
tar -c --exclude=__pycache__ "${SOURCES[@]}" README.md | tar -x -C "$SRC"  # README: pyproject's readme
find "$SRC" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

build() {  # build slim|full: freeze into $WORK/waitfor-KIND, then move to dist/ atomically
    local kind=$1 name=waitfor-$1$SUFFIX
    if cached "$name"; then
        log "dist/$name is up to date"
        return
    fi
    log "freezing dist/$name"
    local t0=$SECONDS
    rm -rf "${WORK:?}/$name"
    mkdir -p "$WORK/$name"
    # What goes in (hidden imports, excluded drivers, dropped runtime hooks): packaging/waitfor.spec.
    # PYINSTALLER_CONFIG_DIR: PyInstaller's cache of stripped binaries is this build's own
    # (the default, ~/.cache/pyinstaller, is shared by every build of the user: two at once
    # corrupt its index, "bincache may be corrupted").
    (cd "$SRC" && PYINSTALLER_CONFIG_DIR=$WORK/pyinstaller WAITFOR_BUNDLE=$kind WAITFOR_BUNDLE_SOURCES=$WORK/$name/sources.json PYTHONHASHSEED=0 "$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
        --distpath "$WORK/$name/dist" --workpath "$WORK/$name/work" "$SRC/packaging/waitfor.spec")
    local out=$WORK/$name/dist/waitfor
    "$out/waitfor" --version >/dev/null  # smoke test before it replaces a good bundle
    # The bill of materials (in the folder and beside the tarball) and the folder's checksums.
    "$VENV/bin/python" "$SRC/packaging/sbom.py" "$out" "$name" "$WORK/$name/sources.json" > "$WORK/$name/sbom.cdx.json"
    cp "$WORK/$name/sbom.cdx.json" "$out/sbom.cdx.json"
    (cd "$out" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum > SHA256SUMS)
    mkdir -p "$DIST"
    rm -rf "${DIST:?}/$name" "$DIST/$name".*
    mv "$out" "$DIST/$name"
    mv "$WORK/$name/sbom.cdx.json" "$DIST/$name.cdx.json"
    # The tarball unpacks to one folder, waitfor-NAME/, owned by root, with stable order,
    # mtimes and no name or time in the gzip header.
    tar -C "$DIST" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
        --exclude=.inputs-hash -c "$name" | gzip -n -9 > "$DIST/$name.tar.gz.tmp"
    mv "$DIST/$name.tar.gz.tmp" "$DIST/$name.tar.gz"
    echo "$HASH" > "$DIST/$name/.inputs-hash"
    to_cache "$name"
    log "dist/$name: $(du -sh "$DIST/$name" | cut -f1) ($(du -h "$DIST/$name.tar.gz" | cut -f1) gz) in $((SECONDS - t0)) s"
}

build slim
build full
sums
