#!/bin/sh
# Run every benchmark once (about 3 minutes). Needs root for pid1.py and the netns probe rate.
#   PYTHON=/path/to/python3 bench/run_all.sh        # default: the python3 on PATH, resolved
#   BENCH_OUT=dir bench/run_all.sh                  # also write JSON results to dir/
# Use the real interpreter, not a pyenv shim: its own start-up would be measured too.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$(command -v python3)}
py=$("$py" -c 'import sys; print(sys.executable)')  # past a pyenv shim, but not out of a venv
commit() {
    # the code measured is the work tree: say which commit, and whether waitfor/ differs from it
    c=$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)
    d=$(git -C "$here/.." status --porcelain -- waitfor 2>/dev/null | wc -l)
    [ "$d" = 0 ] && echo "$c" || echo "$c + $d uncommitted file(s) in waitfor/"
}
echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC')  $(nproc) CPUs  load: $(cut -d' ' -f1-3 /proc/loadavg)  python: $py"
echo "== waitfor at $(commit)"
if [ -n "${BENCH_OUT:-}" ]; then
    mkdir -p "$BENCH_OUT"
    printf '{"start": "%s", "commit": "%s", "load_start": "%s"}\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" \
        "$(commit)" "$(cut -d' ' -f1-3 /proc/loadavg)" > "$BENCH_OUT/meta.json"
fi
for b in startup startup_clean detection scale pid1; do
    echo
    echo "== $b"
    start=$(date +%s)
    case $b in
    startup_clean)
        # the same, in a clean non-editable install (as in a container image); see make_venv.sh
        if venv=$(PYTHON=$py "$here/make_venv.sh"); then
            "$venv/bin/python" "$here/startup.py" --name startup_clean
        else
            echo "skipped: could not build the venv"
        fi ;;
    pid1)
        if [ "$(id -u)" != 0 ]; then echo "skipped: needs root"; else "$py" "$here/pid1.py"; fi ;;
    *)
        "$py" "$here/$b.py" ;;
    esac
    echo "($(( $(date +%s) - start )) s)"
done
echo
echo "== done $(date -u '+%H:%M:%S UTC')  load: $(cut -d' ' -f1-3 /proc/loadavg)  waitfor at $(commit)"
