#!/bin/sh
# A clean, non-editable install of the work tree in a venv of the same interpreter, for
# start-up figures as a container image has them: no editable-install finder and no
# other .pth files of the development interpreter's site-packages run at start-up.
#   PYTHON=/path/to/python3 bench/make_venv.sh [DIR]     (default DIR: /tmp/waitfor-bench-venv)
# Re-run it after changing waitfor: it re-installs the work tree (dependencies stay).
# SRC=/another/tree installs that tree instead (bench/compare_trees.py --venv).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-${BENCH_VENV:-/tmp/waitfor-bench-venv}}
py=${PYTHON:-$(command -v python3)}
src=${SRC:-$here/..}
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$src" 2>&1 | grep -v '^WARNING: Location' >&2 || true
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$src" 2>&1 \
    | grep -v '^WARNING: Location' >&2 || true
"$venv/bin/waitfor" --version >/dev/null
echo "$venv"
