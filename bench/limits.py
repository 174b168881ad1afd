"""Issue 10 B4-B7: how long a hostile dependency can hold an attempt, and what it costs.

Runs the CLI of a tree (this checkout, or `--tree DIR`, e.g. an unpacked `git archive
main`, for a before/after) against hostile servers on 127.0.0.1 and prints one line per case:

- drip: `check --attempt-timeout 1s -t 30s` against an HTTP server sending its status
  line one byte per 0.5 s; `health -t 0` the same (capped at --cap seconds)
- regex: `check -t 2s` with `body: '(?=(a*)*b)a'` (and `(a*)*b`) against 40 a's
- sigterm: SIGTERM 1.5 s into a `wait` busy in that regex: seconds until it exits
- yes: `check` of `command: [yes]`, 2 s attempt: largest regular file the process held
- setsid: `sh -c 'setsid sleep N & sleep 100'`, 1 s attempt: is the sleep left after?
- fds: 30 postgres dependencies under `ulimit -n 16`: exit code, tracebacks, aborts

Standard library only (and psutil, a runtime dependency of waitfor). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def drip_server(payload: bytes, every: float) -> int:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def one(conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)
                for i in range(len(payload)):
                    if every:
                        time.sleep(every)
                    conn.sendall(payload[i:i + 1])
            except OSError:
                pass

    def serve() -> None:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def run(tree: str, args: list[str], cap: float, **kw: object) -> tuple[float, subprocess.CompletedProcess | None]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITFOR_")}
    env["PYTHONPATH"] = tree
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-m", "waitfor", *args], cwd=tree, env=env,
                           capture_output=True, text=True, timeout=cap, **kw)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        return time.monotonic() - t0, None
    return time.monotonic() - t0, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--cap", type=float, default=40.0, help="longest wait per case (s)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    tree, out = a.tree, {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-limits-"))

    port = drip_server(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 100, 0.5)
    out["drip_check_s"] = run(tree, ["check", "--attempt-timeout", "1s", "-t", "30s",
                                     f"http://127.0.0.1:{port}/"], a.cap)[0]
    out["drip_health_t0_s"] = run(tree, ["health", "-t", "0", "--attempt-timeout", "1s",
                                         f"http://127.0.0.1:{port}/"], a.cap)[0]

    aport = drip_server(b"HTTP/1.0 200 OK\r\n\r\n" + b"a" * 40 + b"!", 0)
    for name, pattern in (("regex_lookahead_s", "(?=(a*)*b)a"), ("regex_nested_s", "(a*)*b")):
        cfg = tmp / f"{name}.yaml"
        cfg.write_text(f"dependencies:\n  - url: http://127.0.0.1:{aport}/\n    body: '{pattern}'\n")
        out[name] = run(tree, ["check", "-c", str(cfg), "--attempt-timeout", "1s", "-t", "2s"], a.cap)[0]

    cfg = tmp / "regex_lookahead_s.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITFOR_")}
    env["PYTHONPATH"] = tree
    p = subprocess.Popen([sys.executable, "-m", "waitfor", "wait", "-c", str(cfg), "-t", "30s",
                          "--attempt-timeout", "20s"], cwd=tree, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=a.cap)
    except subprocess.TimeoutExpired:
        p.kill()
    out["sigterm_s"] = time.monotonic() - t0

    cfg = tmp / "yes.yaml"
    cfg.write_text('dependencies:\n  - command: ["yes"]\n')  # unquoted, YAML reads a boolean
    p = subprocess.Popen([sys.executable, "-m", "waitfor", "check", "-c", str(cfg), "--attempt-timeout",
                          "2s", "-t", "3s"], cwd=tree, env=dict(env, TMPDIR=str(tmp)),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    biggest = 0
    while p.poll() is None:
        try:
            for fd in os.listdir(f"/proc/{p.pid}/fd"):
                try:
                    st = os.stat(f"/proc/{p.pid}/fd/{fd}")
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    biggest = max(biggest, st.st_size)
        except OSError:
            break
        time.sleep(0.05)
    out["yes_file_bytes"] = biggest

    tag = f"303.{os.getpid()}"
    cfg = tmp / "setsid.yaml"
    cfg.write_text(f"dependencies:\n  - command: [sh, -c, 'setsid sleep {tag} & sleep 100']\n")
    run(tree, ["check", "-c", str(cfg), "--attempt-timeout", "1s", "-t", "2s"], a.cap)
    time.sleep(0.3)
    import psutil

    left = [q for q in psutil.process_iter(["cmdline"]) if (q.info["cmdline"] or [])[-1:] == [tag]]
    out["setsid_left"] = len(left)
    for q in left:
        q.kill()

    cfg = tmp / "pg30.yaml"
    cfg.write_text("dependencies:\n" + "".join(
        f"  - {{name: pg{i}, url: 'postgres://root@127.0.0.1:5432/test'}}\n" for i in range(30)))
    runs = []
    for _ in range(6):
        p2 = subprocess.run(["bash", "-c", f"ulimit -n 16; exec {sys.executable} -m waitfor wait -c {cfg} -t 3s"],
                            cwd=tree, env=env, capture_output=True, text=True, timeout=a.cap)
        runs.append({"rc": p2.returncode, "tracebacks": p2.stderr.count("Traceback"),
                     "abort": "libgcc_s" in p2.stderr})
    out["fds_runs"] = runs

    if a.json:
        print(json.dumps(out))
    else:
        for k, val in out.items():
            print(f"{k:20} {val if not isinstance(val, float) else f'{val:.2f}'}")


if __name__ == "__main__":
    main()
