"""Issue 9: the self-contained bundle next to the pip install and tini, in one run.

  python3 bench/bundle.py [--runs 40]        (root: the idle part runs inits as PID 1)
  python3 bench/bundle.py --arch arm64 [--runs 20]   (issue 18; root, amd64 host)

Needs `bash packaging/bundle.sh` first (dist/waitfor-slim, dist/waitfor-full) and tini.

- start-up: `X run -- /bin/true` for the slim bundle and the pip install (bin/waitfor of
  this interpreter, or of $BENCH_VENV from bench/make_venv.sh when it exists), and
  `tini -s -- /bin/true`: wall time of the whole command (fork, exec, exit, wait),
  interleaved, median and p90 of --runs each.
- idle RSS as PID 1: `unshare --pid --fork --mount-proc X -- sleep 1000` for the slim and full
  bundles, the pip install and tini; VmRSS of the namespace's init after 1 s (waitfor has
  re-exec'd into its lean supervisor by then).
- size on disk: each bundle folder (du, apparent size) and its .tar.gz, next to the tini
  binaries on this machine. wait4x is not installed here: its size is quoted, not measured.

--arch arm64 (needs `bash packaging/bundle.sh --arch arm64` first): the arm64 bundles under
qemu user emulation (binfmt_misc, QEMU_LD_PREFIX = the arm64 root of packaging/arm64-root.sh).
Absolute times under qemu mean nothing, so start-up is given as a ratio: `X run -- /bin/true`
of the slim and full bundles and `X --version`, each against `python3 -c pass` of the arm64
root's own python3 under the same emulation, interleaved. Sizes as above. No idle RSS: under
emulation it is qemu's (with its translation cache), not waitfor's.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PY, WAITFOR, median, pct, save, table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIST = os.path.join(REPO, "dist")
SLIM = os.path.join(DIST, "waitfor-slim", "waitfor")
FULL = os.path.join(DIST, "waitfor-full", "waitfor")


def pip_waitfor():
    venv = os.environ.get("BENCH_VENV", "/tmp/waitfor-bench-venv")
    exe = os.path.join(venv, "bin", "waitfor")
    return (exe, f"pip install (clean venv {venv})") if os.path.exists(exe) else (WAITFOR, f"pip install ({PY})")


def startup(runs):
    pip_exe, pip_label = pip_waitfor()
    cmds = {
        "bundle (slim)": [SLIM, "run", "--", "/bin/true"],
        pip_label: [pip_exe, "run", "--", "/bin/true"],
        "tini -s": ["tini", "-s", "--", "/bin/true"],
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITFOR_")}
    times = {k: [] for k in cmds}
    order = list(cmds) * runs
    random.shuffle(order)
    for name in list(cmds):  # warm the page cache
        subprocess.run(cmds[name], env=env, check=True)
    for name in order:
        t0 = time.perf_counter()
        subprocess.run(cmds[name], env=env, check=True)
        times[name].append((time.perf_counter() - t0) * 1000)
    return {k: {"median_ms": round(median(v), 1), "p90_ms": round(pct(v, 90), 1)} for k, v in times.items()}


def idle_rss():
    pip_exe, pip_label = pip_waitfor()
    inits = {
        "bundle (slim)": [SLIM, "--"],
        "bundle (full)": [FULL, "--"],
        pip_label: [pip_exe, "--"],
        "tini": ["tini", "--"],
    }
    procs = {}
    try:
        for name, argv in inits.items():
            procs[name] = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                                            *argv, "sleep", "1000"], start_new_session=True)
        time.sleep(1.5)
        res = {}
        for name, p in procs.items():
            kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
            init = int(kids[0])
            st = dict(line.split(":", 1) for line in open(f"/proc/{init}/status"))
            cmd = open(f"/proc/{init}/cmdline").read().split("\0")[:2]
            res[name] = {"rss_kib": int(st["VmRSS"].split()[0]), "cmdline": " ".join(cmd)}
        return res
    finally:
        for p in procs.values():
            p.kill()
            p.wait(10)


def du(path):
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True).stdout.split()[0])


def sizes():
    res = {}
    for kind in ("slim", "full"):
        res[f"waitfor-{kind}/"] = du(os.path.join(DIST, f"waitfor-{kind}"))
        res[f"waitfor-{kind}.tar.gz"] = os.path.getsize(os.path.join(DIST, f"waitfor-{kind}.tar.gz"))
    for t in ("tini", "tini-static"):
        path = shutil.which(t)
        if path:
            res[f"{t} ({path}, Debian)"] = os.path.getsize(os.path.realpath(path))
    return res


def emulated(runs, arch):
    root = subprocess.run(["bash", os.path.join(REPO, "packaging", "arm64-root.sh")], capture_output=True,
                          text=True, check=True).stdout.split()[-1]
    slim = os.path.join(DIST, f"waitfor-slim-{arch}", "waitfor")
    full = os.path.join(DIST, f"waitfor-full-{arch}", "waitfor")
    for exe in (slim, full):
        if not os.path.exists(exe):
            sys.exit(f"{exe} is missing: run `bash packaging/bundle.sh --arch {arch}` first")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITFOR_")}
    env["QEMU_LD_PREFIX"] = root
    floor = "python3 -c pass (arm64, emulated)"
    cmds = {
        floor: [os.path.join(root, "usr", "bin", "python3"), "-c", "pass"],
        "slim bundle: run -- /bin/true": [slim, "run", "--", "/bin/true"],
        "full bundle: run -- /bin/true": [full, "run", "--", "/bin/true"],
        "slim bundle: --version": [slim, "--version"],
    }
    times = {k: [] for k in cmds}
    for argv in cmds.values():  # warm the page cache
        subprocess.run(argv, env=env, check=True, capture_output=True)
    order = list(cmds) * runs
    random.shuffle(order)
    for name in order:
        t0 = time.perf_counter()
        subprocess.run(cmds[name], env=env, check=True, capture_output=True)
        times[name].append((time.perf_counter() - t0) * 1000)
    base = median(times[floor])
    start = {k: {"median_ms": round(median(v), 1), "p90_ms": round(pct(v, 90), 1),
                 "ratio": round(median(v) / base, 2)} for k, v in times.items()}
    size = {}
    for kind in ("slim", "full"):
        size[f"waitfor-{kind}-{arch}/"] = du(os.path.join(DIST, f"waitfor-{kind}-{arch}"))
        size[f"waitfor-{kind}-{arch}.tar.gz"] = os.path.getsize(os.path.join(DIST, f"waitfor-{kind}-{arch}.tar.gz"))
    out = {"arch": arch, "startup": start, "sizes": size}
    print(f"start-up under qemu user emulation ({arch}), {runs} interleaved runs each; ratio to {floor}")
    print(table(["command", "median ms", "p90 ms", "ratio"],
                [[k, v["median_ms"], v["p90_ms"], v["ratio"]] for k, v in start.items()]))
    print("\nsize on disk")
    print(table(["what", "MiB"], [[k, round(v / 2**20, 1)] for k, v in size.items()]))
    save(f"bundle-{arch}", out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--arch", choices=["amd64", "arm64"], default="amd64")
    a = ap.parse_args()
    if a.arch != "amd64":
        emulated(a.runs or 20, a.arch)
        return
    a.runs = a.runs or 40
    for exe in (SLIM, FULL):
        if not os.path.exists(exe):
            sys.exit(f"{exe} is missing: run `bash packaging/bundle.sh` first")
    if not shutil.which("tini"):
        sys.exit("tini is not installed (apt-get install tini)")
    out = {"startup": startup(a.runs), "sizes": sizes()}
    print(f"start-up, `X run -- /bin/true`, {a.runs} interleaved runs each")
    print(table(["command", "median ms", "p90 ms"], [[k, v["median_ms"], v["p90_ms"]] for k, v in out["startup"].items()]))
    if os.geteuid() == 0:
        out["idle"] = idle_rss()
        print("\nidle as PID 1 (`unshare --pid --fork --mount-proc X -- sleep 1000`), after 1.5 s")
        print(table(["init", "VmRSS MiB", "PID 1 cmdline"],
                    [[k, round(v["rss_kib"] / 1024, 1), v["cmdline"]] for k, v in out["idle"].items()]))
    else:
        print("\n(idle RSS as PID 1 skipped: needs root for unshare --pid)")
    print("\nsize on disk")
    print(table(["what", "MB"], [[k, round(v / 1e6, 2)] for k, v in out["sizes"].items()]
                + [["wait4x (quoted: release binary, not installed here)", "~10"]]))
    save("bundle", out)


if __name__ == "__main__":
    main()
