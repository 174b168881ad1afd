"""The probe endpoint (--probe-addr) under hostile clients (issue 10 C8): threads, fds, RSS
and /readyz latency of the waitfor process while N idle connections are held, the time to
answer /readyz behind a burst of connections, and whether a flood under `ulimit -n 256`
stops a healthy app.

    python3 bench/probe_flood.py [--tree DIR] [--idle 300,1000] [--burst 1000]

--tree runs the waitfor of another checkout (e.g. an export of main) for a before/after.
Asserts nothing; prints one table.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import free_port  # noqa: E402

APP = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"]


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def readyz(port: int, timeout: float = 30.0) -> tuple[int | None, float]:
    start = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout) as r:
            code: int | None = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except OSError:
        code = None
    return code, time.monotonic() - start


def start(tree: str, tmp: str, nofile: int | None = None, watch: str = "200ms"):
    dep = socket.socket()
    dep.bind(("127.0.0.1", 0))
    dep.listen(128)
    probe_port = free_port()
    cfg = os.path.join(tmp, "waitfor.yaml")
    with open(cfg, "w") as f:
        f.write(f"watch: {{interval: {watch}, failure_threshold: 2}}\n"
                f"dependencies: [tcp://127.0.0.1:{dep.getsockname()[1]}]\n")

    def limit():
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    env = {**os.environ, "PYTHONPATH": tree, "WAITFOR_STATE_FILE": os.path.join(tmp, "state.json")}
    proc = subprocess.Popen([sys.executable, "-m", "waitfor", "run", "-c", cfg, "--probe-addr",
                             f"127.0.0.1:{probe_port}", "--", *APP], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=limit)
    deadline = time.monotonic() + 20
    while readyz(probe_port, 1)[0] != 200:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("waitfor did not become ready")
        time.sleep(0.05)
    return proc, probe_port, dep


def stop(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    return proc.returncode


def connect_many(port: int, n: int, workers: int = 300) -> list[socket.socket]:
    """n connections by `workers` threads at once, blocking connects as a flood would make
    them (a backlog of 5 delays them with SYN retries; they still get there)."""
    out: list[socket.socket] = []
    lock = threading.Lock()
    left = iter(range(n))

    def work():
        while True:
            with lock:
                if next(left, None) is None:
                    return
            s = socket.socket()
            s.settimeout(10)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            s.setblocking(False)
            with lock:
                out.append(s)

    ts = [threading.Thread(target=work, daemon=True) for _ in range(min(workers, n))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return out


def idle_case(tree: str, n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, dep = start(tree, tmp)
        try:
            base = proc_status(proc.pid)
            conns = connect_many(port, n)
            time.sleep(1.0)
            st = proc_status(proc.pid)
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            answers = [readyz(port) for _ in range(5)]
            lat = [t for _, t in answers]
            for s in conns:
                s.close()
            return {"case": f"{n} idle", "threads": f"{base['Threads']} -> {st['Threads']}", "fds": fds,
                    "rss_kb": f"{base['VmRSS'].split()[0]} -> {st['VmRSS'].split()[0]}",
                    "readyz_s": f"{statistics.median(lat):.4f} (max {max(lat):.4f}; {answers[0][0]})"}
        finally:
            stop(proc)
            dep.close()


def burst_case(tree: str, n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, dep = start(tree, tmp)
        try:
            conns: list[socket.socket] = []
            t = threading.Thread(target=lambda: conns.extend(connect_many(port, n)), daemon=True)
            t.start()
            time.sleep(0.2)  # the burst is under way: ask /readyz 10 times while it lasts
            answers = [readyz(port) for _ in range(10)]
            t.join(30)
            codes = sorted({str(c) for c, _ in answers})
            lat = [x for _, x in answers]
            st = proc_status(proc.pid)
            for s in conns:
                s.close()
            return {"case": f"burst {n} + /readyz", "threads": st["Threads"],
                    "fds": len(os.listdir(f"/proc/{proc.pid}/fd")), "rss_kb": st["VmRSS"].split()[0],
                    "readyz_s": f"{statistics.median(lat):.4f} (max {max(lat):.3f}; {','.join(codes)})"}
        finally:
            stop(proc)
            dep.close()


def flood_case(tree: str, n: int, seconds: float = 8.0) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, dep = start(tree, tmp, nofile=256)
        held: list[socket.socket] = []
        stop_flag = threading.Event()

        def flood():
            while not stop_flag.is_set():
                held.extend(connect_many(port, n - len(held)))
                for s in list(held):
                    try:
                        if s.recv(1) == b"":
                            held.remove(s)
                            s.close()
                    except BlockingIOError:
                        pass
                    except OSError:
                        held.remove(s)
                        s.close()
                time.sleep(0.1)

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        time.sleep(seconds)
        alive = proc.poll() is None
        code, took = readyz(port, 10) if alive else (None, 0.0)
        stop_flag.set()
        t.join(5)
        for s in held:
            s.close()
        rc = stop(proc) if alive else proc.returncode
        dep.close()
        return {"case": f"ulimit -n 256, {n} conns {seconds:.0f}s", "threads": "-", "fds": "-", "rss_kb": "-",
                "readyz_s": f"{took:.3f} ({code})", "app": "running" if alive else f"stopped, exit {rc}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", default=os.path.dirname(HERE))
    ap.add_argument("--idle", default="300,1000")
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--flood", type=int, default=1000)
    a = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    rows = [idle_case(a.tree, int(n)) for n in a.idle.split(",") if n]
    rows.append(burst_case(a.tree, a.burst))
    if a.flood:
        rows.append(flood_case(a.tree, a.flood))
    cols = ["case", "threads", "fds", "rss_kb", "readyz_s", "app"]
    print(f"tree: {a.tree}")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in cols))


if __name__ == "__main__":
    main()
