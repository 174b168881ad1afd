#!/usr/bin/env bash
# Run a command inside the arm64 root of packaging/arm64-root.sh (issue 18):
#
#   bash packaging/arm64-chroot.sh ROOT [NAME=VALUE ...] COMMAND [ARG ...]
#
# The mounts a build or a test needs (ROOT bound on itself, so that `unshare` inside can
# change the root's propagation; /proc, /dev, /sys) are made in a private mount namespace
# (unshare --mount): the kernel drops them when the command ends, on every exit path (an
# error, a signal, a killed CI job), and the host's mount table never sees them. The command
# runs with `env -i` and only PATH, HOME, LANG and the NAME=VALUE given: the host's pip
# settings (index mirrors, find-links folders of amd64 wheels) stay out of the root.
set -euo pipefail
ROOT=${1:?usage: arm64-chroot.sh ROOT [NAME=VALUE ...] COMMAND [ARG ...]}
shift
[ -x "$ROOT/usr/bin/env" ] || { echo "arm64-chroot: $ROOT is no root" >&2; exit 3; }
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
exec unshare --mount --propagation private -- /bin/sh -euc '
    root=$1; shift
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount -t sysfs sysfs "$root/sys"
    exec chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LANG=C.UTF-8 "$@"
' arm64-chroot "$ROOT" "$@"
