"""Issue 18 item 6: what the sidecar gate costs while idle, side by side with the other ways
waitfor (or Python) sits idle, in one run.

    python3 bench/sidecar.py [--seconds 20] [--rounds 3] [--before TREE]

Once every dependency is ready (ready TCP listeners of this script on 127.0.0.1; with
--drivers also the local PostgreSQL and Redis, through their drivers), each process is
left alone for 1.5 s, then sampled over `--seconds`:
- RSS: VmRSS at the end (the process alone; for `run`, without its `sleep` child);
- CPU: % of one core, from a cpuacct cgroup of its own (cgroup v1; ns, every thread and
  child, also those that ended: a watch round runs in a thread that is gone by the end);
- threads: the most seen, sampled every 0.2 s (a watch round's threads come and go).
Needs root and /sys/fs/cgroup/cpuacct.

Processes (each with a watch every 5 s, the sidecar's default, and a probe endpoint):
- `waitfor sidecar` (pip install of this tree; the slim and full bundles when
  packaging/bundle.sh has built them);
- `waitfor run --probe-addr ... -- sleep 1000`: the in-process supervisor with the same
  watch (`--before TREE`: also that tree's, e.g. `git archive main`, for a before/after);
- `waitfor --init -- sleep 1000`: the lean supervisor (no watch, no endpoint);
- `python3 -c 'import time; time.sleep(1000)'`: the interpreter's floor.
Nothing is asserted; the figures go to BENCHMARKS.md.
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PY, drain, free_port, listener, median, table, tree_venv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


CPUACCT = "/sys/fs/cgroup/cpuacct"


class Group:
    """A cgroup v1 cpuacct group of its own for the measured process: cpuacct.usage counts
    the CPU time of every thread in ns, also of the threads that ended (each watch round
    runs in a thread of its own, which /proc/PID/task no longer shows once it is gone)."""

    def __init__(self, name):
        self.path = os.path.join(CPUACCT, name)
        os.makedirs(self.path, exist_ok=True)

    def join(self):  # in the child, before exec: every thread and child it makes is counted
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def usage(self):
        with open(os.path.join(self.path, "cpuacct.usage")) as f:
            return int(f.read()) / 1e9

    def remove(self):
        os.rmdir(self.path)


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def probe_ready(port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the probe endpoint on {port} did not become ready")


def measure(argv, env, seconds, probe_port=None):
    group = Group(f"waitfor-bench-{os.getpid()}")
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=group.join)
    try:
        if probe_port:
            probe_ready(probe_port)
        time.sleep(1.5)
        if p.poll() is not None:
            raise SystemExit(f"{argv[:4]} exited early ({p.returncode})")
        c0, t0 = group.usage(), time.monotonic()
        threads = status(p.pid, "Threads")
        while time.monotonic() - t0 < seconds:
            time.sleep(0.2)
            threads = max(threads, status(p.pid, "Threads"))
        c1, t1 = group.usage(), time.monotonic()
        return status(p.pid, "VmRSS") / 1024, 100 * (c1 - c0) / (t1 - t0), threads
    finally:
        p.kill()
        p.wait()
        while True:  # the kill reaches the children too late for rmdir now and then
            try:
                group.remove()
                break
            except OSError:
                for pid in open(os.path.join(group.path, "cgroup.procs")).read().split():
                    try:
                        os.kill(int(pid), 9)
                    except OSError:
                        pass
                time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=3, help="median of this many runs of each (default 3)")
    ap.add_argument("--before", help="another source tree: its `run --probe-addr` too")
    ap.add_argument("--venv", action="store_true",
                    help="run the trees from clean venvs (bench/make_venv.sh), as an image has them")
    ap.add_argument("--drivers", action="store_true",
                    help="also the sidecar with postgres:// and redis:// dependencies (local servers)")
    a = ap.parse_args()

    socks = [listener(free_port()) for _ in range(2)]
    for sock in socks:
        threading.Thread(target=drain, args=(sock,), daemon=True).start()
    targets = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("WAITFOR_")}
    base_env["WAITFOR_STATE_FILE"] = f"/tmp/waitfor-bench-sidecar-{os.getpid()}.json"
    if a.venv:
        here, pip = base_env, [os.path.join(tree_venv(REPO, "sidecar-after"), "bin", "waitfor")]
        py = os.path.join(os.path.dirname(pip[0]), "python3")
    else:
        here, pip, py = dict(base_env, PYTHONPATH=REPO), [PY, os.path.join(REPO, "bin", "waitfor")], PY
    cases = []

    def add(label, argv, env, probe=True):
        cases.append((label, argv, env, probe))

    add("waitfor sidecar (pip)", pip + ["sidecar", "-q", *targets], here)
    for flavour in ("slim", "full"):
        exe = os.path.join(REPO, "dist", f"waitfor-{flavour}", "waitfor")
        if os.path.exists(exe):
            add(f"waitfor sidecar ({flavour} bundle)", [exe, "sidecar", "-q", *targets], base_env)
    if a.drivers:
        pg, redis = "postgres://postgres@127.0.0.1:5432/postgres", "redis://127.0.0.1:6379/0"
        if not a.venv:  # the clean venv has no drivers
            add("waitfor sidecar (pip), postgres + redis", pip + ["sidecar", "-q", pg, redis], here)
        exe = os.path.join(REPO, "dist", "waitfor-full", "waitfor")
        if os.path.exists(exe):
            add("waitfor sidecar (full bundle), postgres + redis", [exe, "sidecar", "-q", pg, redis], base_env)
    add("waitfor run --probe-addr, watch 5s (pip)",
        pip + ["run", "-q", "--watch-interval", "5s", *targets, "--", "sleep", "1000"], here)
    if a.before:
        if a.venv:
            before, env = [os.path.join(tree_venv(a.before, "sidecar-before"), "bin", "waitfor")], base_env
        else:
            before = [PY, os.path.join(a.before, "bin", "waitfor")]
            env = dict(base_env, PYTHONPATH=os.path.abspath(a.before))
        add("  the same, --before tree", before + ["run", "-q", "--watch-interval", "5s", *targets, "--",
                                                  "sleep", "1000"], env)
    add("waitfor --init -- sleep (lean supervisor)", pip + ["--init", "--", "sleep", "1000"], here, probe=False)
    add("python3 -c 'time.sleep(1000)'", [py, "-c", "import time; time.sleep(1000)"], base_env, probe=False)

    results = {label: [] for label, *_ in cases}
    for _ in range(a.rounds):
        for label, argv, env, probe in cases:
            port = free_port() if probe else None
            full = list(argv)
            if port:
                # --probe-addr after the subcommand's own options, before any `--`
                i = full.index("--") if "--" in full else len(full)
                full[i:i] = ["--probe-addr", f"127.0.0.1:{port}"]
            results[label].append(measure(full, env, a.seconds, port))
    rows = []
    for label, runs in results.items():
        rss, cpu, threads = (median([r[i] for r in runs]) for i in range(3))
        rows.append([label, f"{rss:.1f}", f"{cpu:.3f}", int(threads)])
    for s in socks:
        s.close()
    load = os.getloadavg()
    how = "clean venvs" if a.venv else f"PYTHONPATH, {PY}"
    print(f"idle once ready ({how}): over {a.seconds:g} s after 1.5 s, median of {a.rounds}; load {load[0]:.2f}")
    print(table(["process", "RSS MiB", "CPU % of a core", "threads (max)"], rows))


if __name__ == "__main__":
    main()
