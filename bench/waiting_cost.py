"""Issue 12: what waiting costs while dependencies are not there yet, for two waitfor trees
side by side in one run (before and after a change), with wait-for-it as the peer.

    python3 bench/waiting_cost.py BEFORE_TREE AFTER_TREE [-n 1,10,50,300] [--seconds 4]

For each N: `waitfor wait -q -t 30s 127.0.0.1:P1 ... 127.0.0.1:PN` on N closed ports
(ports outside the ephemeral range that nothing listens on), started `--settle` s (0.7)
before the sample; over the next `--seconds` s: CPU (% of one core: the run time of every thread from
/proc/PID/task/*/schedstat, in ns, plus the reaped children's user+sys from /proc/PID/stat,
in clock ticks; the tick counts alone are too coarse for 1 %),
threads (/proc/PID/status Threads, max of samples every 0.25 s) and VmRSS at the end.
The peer: wait-for-it on N=1 (it takes one dependency; a chain waits for one at a time,
so its cost does not grow with N).

Each tree runs as `PYTHONPATH=TREE python3 TREE/bin/waitfor`, so both pay the same
interpreter; with --venv, from a clean venv of each tree instead (bench/make_venv.sh), as an
image has it: the development interpreter's .pth files add ~2 MiB and some CPU to every
run. Nothing is asserted; the figures go to BENCHMARKS.md.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PY, free_port, table, tree_venv

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    own = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                own += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # cutime, cstime (fields 16-17): wait-for-it's work is in the children it forks and
    # reaps for each try
    return own / 1e9 + sum(int(x) for x in fields[13:15]) / TICK


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def measure(argv, env, seconds, settle=0.7):
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle)  # start-up and first attempts (or the fast window) are not what is measured
        c0, t0 = cpu_seconds(p.pid), time.monotonic()
        threads = 0
        while time.monotonic() - t0 < seconds:
            threads = max(threads, status(p.pid, "Threads"))
            time.sleep(0.25)
        c1, t1 = cpu_seconds(p.pid), time.monotonic()
        rss = status(p.pid, "VmRSS")
        if p.poll() is not None:
            raise SystemExit(f"{argv[:3]} exited early ({p.returncode})")
        return 100 * (c1 - c0) / (t1 - t0), threads, rss / 1024
    finally:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("-n", default="1,10,50,300", help="numbers of closed ports (default 1,10,50,300)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=1, help="measure each case this many times; report the median")
    ap.add_argument("--venv", action="store_true", help="run each tree from a clean venv of its own")
    ap.add_argument("--settle", type=float, default=0.7,
                    help="seconds after the start before the sample (default 0.7; 3 to measure after "
                         "the fast window of issue 17's policy)")
    a = ap.parse_args()
    venvs = {label: tree_venv(tree, label) for label, tree in (("before", a.before), ("after", a.after))} \
        if a.venv else {}
    rows = []
    for n in [int(x) for x in a.n.split(",")]:
        ports = []
        while len(ports) < n:
            p = free_port()
            if p not in ports:
                ports.append(p)
        targets = [f"127.0.0.1:{p}" for p in ports]
        figures = {}
        for label, tree in (("before", a.before), ("after", a.after)):
            if venvs:
                env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
                argv = [os.path.join(venvs[label], "bin", "waitfor"), "wait", "-q", "-t", "30s", *targets]
            else:
                env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
                argv = [PY, os.path.join(tree, "bin", "waitfor"), "wait", "-q", "-t", "30s", *targets]
            runs = sorted((measure(argv, env, a.seconds, a.settle) for _ in range(a.rounds)), key=lambda r: r[0])
            figures[label] = runs[len(runs) // 2]
            cpu, threads, rss = figures[label]
            rows.append([n, label, f"{cpu:.2f}", threads, f"{rss:.1f}"])
        rows[-1].append(f"{figures['after'][0] / max(figures['before'][0], 0.01):.2f}x CPU")
        rows[-2].append("")
        if n == 1 and os.path.exists("/usr/bin/wait-for-it"):
            cpu, threads, rss = measure(["/usr/bin/wait-for-it", "-q", "-t", "30", "-h", "127.0.0.1",
                                         "-p", str(ports[0])], dict(os.environ), a.seconds, a.settle)
            rows.append([n, "wait-for-it (bash)", f"{cpu:.2f}", threads, f"{rss:.1f}", ""])
    print(f"waiting on N closed ports, over {a.seconds:g} s after {a.settle:g} s, median of {a.rounds}")
    print(table(["N", "waiter", "CPU % of a core", "threads", "RSS MiB", "after/before"], rows))


if __name__ == "__main__":
    main()
