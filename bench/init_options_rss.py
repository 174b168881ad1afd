"""Idle RSS of the lean supervisor with the options of issue 11: --user and --pdeathsig
(--user loads ctypes to keep CAP_KILL after the drop: issue 16 A2).

Each variant runs `waitfor --init [OPTIONS] -- sleep 1000` as a plain process (--pdeathsig
applies only outside PID 1; --init re-execs into the same lean supervisor as PID 1 does),
and, for --user, also as PID 1 of a PID namespace. After 1 s to settle, VmRSS of the
supervisor (the app's parent) from /proc/PID/status; the median of --runs runs.
--user needs root (it switches to nobody). Run from the repository: PYTHONPATH=. python3 bench/init_options_rss.py
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PY, save, table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {
    "plain": [],
    "--user nobody": ["--user", "nobody"],
    "--pdeathsig TERM": ["--pdeathsig", "TERM"],
    "--user nobody --pdeathsig TERM": ["--user", "nobody", "--pdeathsig", "TERM"],
}


def rss_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def supervisor_pid(top, ns):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{top}/task/{top}/children") as f:
                kids = [int(p) for p in f.read().split()]
        except OSError:
            kids = []
        if ns and kids:
            top, ns = kids[0], False  # unshare's child: the namespace's init
            continue
        if kids and not ns:
            with open(f"/proc/{kids[0]}/cmdline", "rb") as f:
                if f.read().startswith(b"sleep"):
                    return top
        time.sleep(0.01)
    raise SystemExit("the app did not start")


def one(args, ns):
    prefix = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] if ns else []
    argv = prefix + [PY, "-m", "waitfor"] + ([] if ns else ["--init"]) + args + ["--", "sleep", "1000"]
    p = subprocess.Popen(argv, env=dict(os.environ, PYTHONPATH=REPO), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        pid = supervisor_pid(p.pid, ns)
        time.sleep(1.0)
        return rss_of(pid)
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(p.pid)], check=False)
        p.wait(10)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    rows, data = [], {}
    for ns in (False, True):
        for name, args in VARIANTS.items():
            if ns and "--pdeathsig" in args:
                continue  # ignored as PID 1
            if "--user" in args and os.geteuid() != 0:
                continue
            kib = statistics.median(one(args, ns) for _ in range(a.runs))
            where = "PID 1" if ns else "--init"
            data[f"{where} {name}"] = kib
            base = data[f"{where} plain"]
            rows.append([where, name, int(kib), f"{int(kib - base):+d}"])
    print(table(["as", "options", "idle VmRSS kB", "vs plain"], rows))
    save("init_options_rss", data)


if __name__ == "__main__":
    main()
