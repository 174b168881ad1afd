"""Helpers shared by the benchmark scripts: percentiles, tables, ports, paths.

Run every script with the real interpreter (not a pyenv shim), e.g.
    /root/.pyenv/versions/3.11.7/bin/python3 bench/startup.py
The waitfor console script is looked up next to that interpreter.
"""

import json
import math
import os
import random
import shutil
import socket
import statistics
import sys

PY = sys.executable  # not realpath: in a venv, that would leave the venv
_bindir = os.path.dirname(sys.executable)
WAITFOR = os.path.join(_bindir, "waitfor") if os.path.exists(os.path.join(_bindir, "waitfor")) else shutil.which("waitfor")
HERE = os.path.dirname(os.path.abspath(__file__))


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))
    return v[k]


def median(values):
    return statistics.median(values) if values else float("nan")


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = map(int, f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


_TAKEN: set[int] = set()


def free_port() -> int:
    """A port that is free now and outside the kernel's ephemeral range: a waiter's own
    connect() attempts take their source ports from that range, and could otherwise take
    the very port a test opens later (EADDRINUSE, or a TCP self-connect on loopback)."""
    lo, hi = _ephemeral_range()
    candidates = (10000, lo - 1) if lo > 12000 else (hi + 1, 65535)
    while True:
        port = random.randint(*candidates)
        if port in _TAKEN:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _TAKEN.add(port)
        return port


def listener(port: int, backlog: int = 4096) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(backlog)
    return s


def tree_venv(tree: str, name: str) -> str:
    """A clean venv of this interpreter with the waitfor source tree `tree` installed
    (bench/make_venv.sh with SRC=tree), as an image has it; -> the venv's directory."""
    import subprocess
    import tempfile

    venv = os.path.join(tempfile.gettempdir(), f"waitfor-compare-{name}")
    subprocess.run(["sh", os.path.join(os.path.dirname(os.path.abspath(__file__)), "make_venv.sh"), venv],
                   env=dict(os.environ, SRC=os.path.abspath(tree)), check=True, stdout=subprocess.DEVNULL)
    return venv


def drain(sock: socket.socket) -> None:
    """Accept and close until the socket is closed, so that the backlog never fills however
    many runs connect (run it in a daemon thread)."""
    while True:
        try:
            c, _ = sock.accept()
            c.close()
        except OSError:
            return


def table(headers, rows) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _fmt(c):
    if isinstance(c, float):
        if c != c:
            return "-"
        return f"{c:.3g}" if abs(c) < 10 else f"{c:.1f}"
    return str(c)


def need(*tools):
    """The tools that are missing (so a script can skip a peer instead of failing)."""
    return [t for t in tools if shutil.which(t) is None]


def save(name: str, data) -> None:
    """Write results to $BENCH_OUT/<name>.json when BENCH_OUT is set (run_all.sh sets it)."""
    out = os.environ.get("BENCH_OUT")
    if not out:
        return
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"
