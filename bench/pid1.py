"""Target 4, waitfor as PID 1 next to tini, dumb-init and catatonit.

Each init runs as PID 1 of a new PID namespace (root needed):

  unshare --pid --fork --mount-proc  tini -- APP | dumb-init APP | catatonit -- APP | waitfor -- APP

Measured on the init process (its pid outside the namespace, read from /proc):

- idle: APP = `sleep 1000`; all inits run at once, and one more waitfor that first
  waited for a TCP dependency (`waitfor run 127.0.0.1:PORT -- APP`, a listener this
  script holds): its wait imported socket, threading, tenacity, which the re-exec into the
  lean supervisor is meant to drop. After 1 s to settle: VmRSS
  (target <= 12 MiB for waitfor), then voluntary_ctxt_switches (summed over its threads)
  before and after 5 idle seconds (target 0; tini wakes once a second).
- signals: APP = `python -I -S bench/app.py signals N`, which waits in sigwaitinfo() and
  writes CLOCK_MONOTONIC on arrival. This script sends SIGUSR1 to the init (recording
  CLOCK_MONOTONIC just before kill()), waits for the app's line, pauses 1-3 ms, repeats.
  Latency = arrival - send. Target p99 <= 5 ms.
- orphans: APP = `python -I -S bench/app.py orphans N`: a grandchild is orphaned to the
  init and exits; latency = from just before its _exit() until kill(pid, 0) fails, polled
  every ~50 us from inside the app. This includes the kernel's tear-down of the exiting
  process (tens of us) and the polling granularity, the same for every init. Target p99
  <= 10 ms.

The inits are measured one after the other in shuffled order for signals and orphans.
"""

import argparse
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import HERE, PY, WAITFOR, median, pct, save, table, verdict

APP = os.path.join(HERE, "app.py")
INITS = {
    "tini": ["tini", "--"],
    "dumb-init": ["dumb-init"],
    "catatonit": ["catatonit", "--"],
    "waitfor": [WAITFOR, "--"],
}


def status(pid):
    d = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            d[k] = v.strip()
    return d


def ctxt(pid):
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        s = status(f"{pid}/task/{tid}")
        vol += int(s["voluntary_ctxt_switches"])
        invol += int(s["nonvoluntary_ctxt_switches"])
    return vol, invol


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


class Init:
    """One init as PID 1 of its own PID namespace, supervising argv."""

    def __init__(self, name, app_argv):
        self.name = name
        self.proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc"] + INITS[name] + app_argv,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.pid = None
        self._buf = b""
        deadline = time.monotonic() + 10
        app0 = os.path.basename(app_argv[0]).encode()
        while time.monotonic() < deadline:
            kids = children(self.proc.pid)
            if kids:
                self.pid = kids[0]
                apps = [c for c in children(self.pid) if os.path.basename(cmdline(c)[0]) == app0]
                if apps:  # the init runs its final program (waitfor: the lean supervisor) and the app
                    self.app = apps[0]
                    return
            time.sleep(0.01)
        self.stop()
        raise SystemExit(f"{name}: the app did not start as the init's child")

    def readline(self, timeout=5.0):
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise SystemExit(f"{self.name}: no answer from the app")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise SystemExit(f"{self.name}: the app's output ended")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def stop(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)  # PID 1 dies: the kernel kills the namespace
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def idle(names, seconds):
    extra = []
    if "waitfor" in names:
        from _common import free_port, listener

        port = free_port()
        sock = listener(port)
        INITS["waitfor after a TCP wait"] = [WAITFOR, "run", "-q", f"127.0.0.1:{port}", "--"]
        extra = ["waitfor after a TCP wait"]
    inits = [Init(n, ["sleep", "1000"]) for n in names + extra]
    try:
        time.sleep(1.0)
        res = {}
        for i in inits:
            st = status(i.pid)
            res[i.name] = {"rss_kib": int(st["VmRSS"].split()[0]),
                           "rss_anon_kib": int(st["RssAnon"].split()[0]),
                           "rss_file_kib": int(st["RssFile"].split()[0]),
                           "threads": int(st["Threads"])}
        before = {i.name: ctxt(i.pid) for i in inits}
        time.sleep(seconds)
        for i in inits:
            v, n = ctxt(i.pid)
            res[i.name]["vol_ctxt"] = v - before[i.name][0]
            res[i.name]["invol_ctxt"] = n - before[i.name][1]
        return res
    finally:
        for i in inits:
            i.stop()
        if extra:
            sock.close()


def signals(name, n, rnd):
    init = Init(name, [PY, "-I", "-S", APP, "signals", str(n)])
    try:
        assert init.readline() == "ready"
        out = []
        for _ in range(n):
            time.sleep(rnd.uniform(0.001, 0.003))
            t = time.monotonic_ns()
            os.kill(init.pid, signal.SIGUSR1)
            _kind, ns = init.readline().split()
            out.append((int(ns) - t) / 1e6)
        return out
    finally:
        init.stop()


def orphans(name, n):
    init = Init(name, [PY, "-I", "-S", APP, "orphans", str(n)])
    try:
        assert init.readline() == "ready"
        out = []
        for _ in range(n):
            _, t_exit, t_gone = init.readline().split()
            out.append((int(t_gone) - int(t_exit)) / 1e6)
        return out
    finally:
        init.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=300, help="signals and orphans per init (default 300)")
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--only", action="append", choices=sorted(INITS), help="measure only this init (repeatable)")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("pid1.py needs root (unshare --pid)")
    rnd = random.Random(a.seed)
    names = [n for n in (a.only or INITS) if n == "waitfor" or shutil.which(INITS[n][0])]
    missing = sorted(set(a.only or INITS) - set(names))

    result = {"idle": idle(names, a.idle_seconds), "signals": {}, "orphans": {}}
    order = names[:]
    rnd.shuffle(order)
    for name in order:
        result["signals"][name] = signals(name, a.n, rnd)
    rnd.shuffle(order)
    for name in order:
        result["orphans"][name] = orphans(name, a.n)

    rows = []
    for name in names:
        idl, sg, orph = result["idle"][name], result["signals"][name], result["orphans"][name]
        rows.append([name, idl["rss_kib"] / 1024, idl["rss_anon_kib"] / 1024, idl["vol_ctxt"],
                     median(sg), pct(sg, 99), max(sg), median(orph), pct(orph, 99), max(orph)])
        result["signals"][name] = {"n": len(sg), "median_ms": median(sg), "p90_ms": pct(sg, 90),
                                   "p99_ms": pct(sg, 99), "max_ms": max(sg)}
        result["orphans"][name] = {"n": len(orph), "median_ms": median(orph), "p90_ms": pct(orph, 90),
                                   "p99_ms": pct(orph, 99), "max_ms": max(orph)}
    for name, idl in result["idle"].items():
        if name not in names:
            rows.append([name, idl["rss_kib"] / 1024, idl["rss_anon_kib"] / 1024, idl["vol_ctxt"]] + ["-"] * 6)
    print(f"PID 1: idle {a.idle_seconds:g} s with `sleep`; {a.n} SIGUSR1 forwards; {a.n} orphans reaped"
          + (f" (not installed: {', '.join(missing)})" if missing else ""))
    print(table(["init", "RSS MiB", "anon MiB", f"vol cs/{a.idle_seconds:g}s", "sig med ms", "sig p99 ms",
                 "sig max ms", "reap med ms", "reap p99 ms", "reap max ms"], rows))
    if "waitfor" in names:
        w = {k: result[k]["waitfor"] for k in ("idle", "signals", "orphans")}
        rss = w["idle"]["rss_kib"] / 1024
        print(f"\ntarget: waitfor VmRSS <= 12 MiB: {rss:.1f} MiB {verdict(rss <= 12)}")
        print(f"target: signal forwarding p99 <= 5 ms: {w['signals']['p99_ms']:.2f} ms "
              f"{verdict(w['signals']['p99_ms'] <= 5)}")
        print(f"target: orphan reaping p99 <= 10 ms: {w['orphans']['p99_ms']:.2f} ms "
              f"{verdict(w['orphans']['p99_ms'] <= 10)}")
        print(f"target: 0 voluntary context switches in {a.idle_seconds:g} idle s: {w['idle']['vol_ctxt']} "
              f"{verdict(w['idle']['vol_ctxt'] == 0)}")
    save("pid1", result)


if __name__ == "__main__":
    main()
