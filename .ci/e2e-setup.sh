#!/usr/bin/env bash
# Prerequisites of the end-to-end tests (tests/e2e): podman with runc, debootstrap for the
# base image (no registry can be pulled), and Debian's docker-compose 1.29 for the compose
# test. Idempotent: installs only what is missing; `apt-get update` only if an install fails.
# Run as root (CI does: bash .ci/e2e-setup.sh). Everything else (podman config files, the
# debootstrap image, the wheel, the test image) is set up by tests/e2e/conftest.py.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "e2e-setup: not root; the e2e tests will be skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "e2e-setup: no apt-get; install podman, runc, debootstrap and docker-compose yourself" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
updated=

install() {  # install [apt-get options] PACKAGE...: retry once after apt-get update
    if ! apt-get install -y -q "$@"; then
        if [ -z "$updated" ]; then
            apt-get update -q
            updated=1
        fi
        apt-get install -y -q "$@"
    fi
}

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    echo "e2e-setup: installing ${missing[*]}"
    install "${missing[@]}"
fi

# Without --no-install-recommends apt also pulls in docker.io and containerd.
if ! command -v docker-compose >/dev/null; then
    echo "e2e-setup: installing docker-compose"
    install --no-install-recommends docker-compose
fi

echo "e2e-setup: $(podman --version), runc $(runc --version | head -n1 | awk '{print $3}'), $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"
