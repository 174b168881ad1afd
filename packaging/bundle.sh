#!/usr/bin/env bash
# Build the self-contained bundles of waitfor (issue 9): a Python interpreter, waitfor and
# its dependencies frozen by PyInstaller (https://pyinstaller.org) in one-folder mode, so
# that an image without Python runs waitfor with one `COPY`:
#
#   dist/waitfor-slim/   core dependencies; the stdlib kinds (tcp, http(s), unix, file, dns, command)
#   dist/waitfor-full/   the same plus every driver extra (postgres, mysql, redis, amqp, mqtt, nats, grpc)
#   dist/waitfor-slim.tar.gz, dist/waitfor-full.tar.gz
#
# Each folder has the executable `waitfor` at its top: `dist/waitfor-slim/waitfor run ... -- app`.
# One folder, not PyInstaller's one-file mode: a one-file build unpacks itself into /tmp at
# every start (slow, needs a writable /tmp, and runs the program as a child of a bootloader
# process, which would then be PID 1 instead of waitfor).
#
# Usage: bash packaging/bundle.sh [--force]
# Environment: PYTHON (the interpreter to freeze; default python3, needs its shared
# libpython, as pyenv's --enable-shared and Debian's python3 have), WAITFOR_BUNDLE_WORK
# (build folder; default build/bundle).
#
# Cached: the build venv by its requirements, each bundle by a hash of its inputs (waitfor/,
# bin/waitfor, pyproject.toml, packaging/, the interpreter's version); an unchanged second
# run takes well under a second. Needs PyPI (or a pip config that reaches it) the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
WORK=${WAITFOR_BUNDLE_WORK:-$REPO/build/bundle}
DIST=$REPO/dist
FORCE=${1:-}
# The freezer, pinned to a major version (its hooks and bootloader behaviour are what the
# tests check). pyinstaller-hooks-contrib comes with it and has the hooks for grpc.
FREEZER="pyinstaller>=6.3,<7"

log() { echo "bundle: $*" >&2; }

pyver=$("$PYTHON" -c 'import sys, sysconfig; print("%d.%d.%d" % sys.version_info[:3], sysconfig.get_config_var("Py_ENABLE_SHARED"))')

inputs_hash() {
    # Every file that goes into a bundle, by content (not by mtime: a fresh clone must hit).
    {
        echo "$pyver"
        find waitfor packaging bin/waitfor pyproject.toml -type f \
            ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
}
HASH=$(inputs_hash)

cached() {  # cached NAME: the bundle and its tarball were built from these inputs
    [ "$FORCE" != --force ] && [ -x "$DIST/$1/waitfor" ] && [ -f "$DIST/$1.tar.gz" ] \
        && [ "$(cat "$DIST/$1/.inputs-hash" 2>/dev/null)" = "$HASH" ]
}
if cached waitfor-slim && cached waitfor-full; then
    log "dist/waitfor-slim and dist/waitfor-full are up to date ($HASH)"
    exit 0
fi

# ---------------------------------------------------------------- the build venv
VENV=$WORK/venv
venv_key=$(printf '%s\n%s\n' "$pyver" "$FREEZER" | cat - pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.key" 2>/dev/null)" != "$venv_key" ]; then
    log "creating the build venv (PyInstaller, waitfor's dependencies and every driver extra)"
    rm -rf "$VENV"
    mkdir -p "$WORK"
    "$PYTHON" -m venv "$VENV"
    # pip's log goes to a file, shown when it fails (a pip.conf with unreachable indexes
    # makes pip warn on every package).
    if ! { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$FREEZER" "$REPO[all]" \
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
build() {  # build slim|full: freeze into $WORK/waitfor-KIND, then move to dist/ atomically
    local kind=$1 name=waitfor-$1
    if cached "$name"; then
        log "dist/$name is up to date"
        return
    fi
    log "freezing dist/$name"
    local t0=$SECONDS
    rm -rf "${WORK:?}/$name"
    mkdir -p "$WORK/$name"
    # What goes in (hidden imports, excluded drivers, dropped runtime hooks): packaging/waitfor.spec.
    WAITFOR_BUNDLE=$kind "$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
        --distpath "$WORK/$name/dist" --workpath "$WORK/$name/work" "$REPO/packaging/waitfor.spec"
    local out=$WORK/$name/dist/waitfor
    "$out/waitfor" --version >/dev/null  # smoke test before it replaces a good bundle
    echo "$HASH" > "$out/.inputs-hash"
    mkdir -p "$DIST"
    rm -rf "${DIST:?}/$name" "$DIST/$name.tar.gz"
    mv "$out" "$DIST/$name"
    # The tarball unpacks to one folder, waitfor-NAME/, owned by root, with stable order.
    tar -C "$DIST" --sort=name --owner=0 --group=0 --numeric-owner -czf "$DIST/$name.tar.gz.tmp" "$name"
    mv "$DIST/$name.tar.gz.tmp" "$DIST/$name.tar.gz"
    log "dist/$name: $(du -sh "$DIST/$name" | cut -f1) ($(du -h "$DIST/$name.tar.gz" | cut -f1) gz) in $((SECONDS - t0)) s"
}

build slim
build full
