"""Issue 17 item 3: what a database sees from a fleet of N waiters, for waitfor and its peers.

    sudo python3 bench/fleet.py [--n 50,200] [--tools waitfor,wait-for-it,bash-tcp,pg_isready]
                                [--tree PATH] [--phase-seconds 10] [--rollout 8] [--json FILE]
    python3 bench/fleet.py --summarize RUN1.json RUN2.json ...   (min-max over runs)

Needs root, `ip` (iproute2), `nft` (nftables), PostgreSQL 15's server binaries
(/usr/lib/postgresql/15/bin, package postgresql-15) and `pg_isready`; a missing peer
(`wait-for-it`, package wait-for-it) is installed with apt-get. Everything stays on this
machine: two network namespaces made here, joined by a veth pair with the addresses
10.99.0.1 (the database) and 10.99.0.2 (the waiters), which exist only inside them.

The setup, once per invocation:
- namespace D (the database): nftables table `ip wff` in D only, whose prerouting counters
  count SYNs to port 5432 (`tcp flags syn / syn,ack`) and new connections (`ct state new`);
  a private PostgreSQL 15 (initdb into a temp dir as the postgres user, trust auth,
  listening on 10.99.0.1:5433 only, max_connections 100);
- namespace W (the waiters): this script joins it after the setup, so every waiter it
  starts is in W.

Then, for each N and each tool, a sub-run of three phases:
1. port closed (>= --phase-seconds, and long enough for 5 s after the rollout): every SYN to
   10.99.0.1:5432 gets an RST. The N waiters are started evenly over --rollout seconds (a
   rolling deployment), each `TOOL ... -- date +%s.%N` with its stdout in a file.
2. starting up (--starting-seconds, default --phase-seconds; 0 skips it): a fake PostgreSQL in D (this script, --_fake-server)
   listens on 10.99.0.1:5432 with a backlog of 244 (what PostgreSQL 15 asks for with
   max_connections 100: 2 x MaxBackends 122), declines SSL/GSS ('N'), answers every
   startup message with ErrorResponse FATAL SQLSTATE 57P03 "the database system is
   starting up", and logs each connection (login, or bare: closed without a startup
   message, i.e. a TCP-only probe).
3. ready: an nft `redirect to :5433` rule sends new connections to the real PostgreSQL (the
   instant it is in place is "ready"), then the fake server is stopped; the phase ends when
   every waiter has exited (bounded by --ready-seconds).

The tools: `waitfor` (`waitfor run -q -t 120s postgres://postgres@10.99.0.1:5432/postgres
-- date`, run from --tree with PYTHONPATH=TREE, default this checkout), `waitfor-1s` (the
same with --interval 1s), `wait-for-it` (Debian's, `-h -p -t -- date`), `bash-tcp` (a bash
loop: `(exec 3<>/dev/tcp/H/P)` then `sleep 1`), `pg_isready` (a loop: `pg_isready -q -h H
-p P -t 2` then `sleep 1`). wait-for-it and the /dev/tcp loop only wait for the port, so
they start their app as the fake server opens (their ready -> app start is negative, they
are counted as "early").

The figures, per tool and phase:
- SYNs per waiter per second: phase 1 from the nft counter over the waiter-seconds spent in
  it (each waiter from its own start), and over the window from --settle (3) s after the
  last waiter was started to the end of phase 1 (all waiters have waited >= 3 s: raise
  --settle where start-up lags, see below), from a packet capture in D (AF_PACKET with a
  BPF filter for SYNs to the port, kernel timestamps); "captured" says how many of nft's
  SYNs the capture saw;
- phase 2: TCP connections (nft `ct state new`) and SYNs per login (the fake server's
  logins), logins per waiter per second, bare connections;
- peak 100 ms rate / mean: the busiest 100 ms bin of captured SYNs over the mean of the
  window (phase 1's window; phase 2 whole and after its first 2 s; also of the fake
  server's logins); SYNs per waiter in the first 2 s after the port opens;
- accept-queue overflows: TcpExt ListenOverflows of D (/proc/PID/net/netstat of a process
  in D), in the first 2 s after the port opens (phase 2) and after ready (phase 3), and
  over each phase;
- ready -> app start: each app's `date +%s.%N` minus the ready instant, p50/p95/max over
  the apps started after it; "early" and "never" counted apart;
- CPU: the fleet's CPU in % of one core over the phase-1 window (/proc/PID/stat utime +
  stime + cutime + cstime of every process in each waiter's session: each waiter is
  started in a session of its own), and per waiter over its whole life (the rusage that
  wait4() returns, reaped children included); RSS (VmRSS) and PSS (smaps_rollup) per
  waiter, summed over its session's processes, median, sampled at the end of the window.

Caveat, measured on the 2-core machine this was written on: N waitfor processes are N
Python interpreters that import psycopg (~0.2 s of CPU each to start), and beyond ~200
waiters the machine itself is the limit: start-up lags the rollout, attempts are late, and
latencies then measure the CPU, not the waiting policy; a waiter may still be starting
3 s after it was spawned (use e.g. --settle 15 --window 8 at N = 200 there). Counts (SYNs,
connections per login, overflows) are the robust figures; read latencies only at N where the machine is
not the limit (the "fleet CPU" row says how busy it was), and note any other load.

Cleanup on every exit path (normal, exception, SIGINT/SIGTERM/SIGHUP): waiters (each in
its own session, killed by process group), the fake server, the capture, PostgreSQL
(pg_ctl stop -m immediate) and its temp dir, both namespaces (and with them the veth pair
and the nft table, which live only in them). Every loop is bounded in time. A run killed
with SIGKILL leaves its namespaces `wff<pid>w`/`wff<pid>d` and /tmp/wff-<pid>-*: the next
run removes those whose pid is gone, and kills the processes left in them (PostgreSQL,
waiters; these also end by their own --timeout).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PY, median, pct, save, table

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PGBIN = "/usr/lib/postgresql/15/bin"
DB_ADDR, W_ADDR, PREFIX = "10.99.0.1", "10.99.0.2", 24
PORT, REAL_PORT = 5432, 5433
BACKLOG = 244  # PostgreSQL 15, max_connections 100: 2 * MaxBackends (100 + 3 + 1 + 8 + 10)
DATE = shutil.which("date") or "/bin/date"
TOOLS = ("waitfor", "waitfor-1s", "wait-for-it", "bash-tcp", "pg_isready")
DEFAULT_TOOLS = "waitfor,wait-for-it,bash-tcp,pg_isready"
CLONE_NEWNET = 0x40000000
TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[fleet {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv, check=True, quiet=False, timeout=60):
    return subprocess.run(argv, check=check, timeout=timeout, text=True,
                          stdout=subprocess.PIPE if quiet else None, stderr=subprocess.PIPE if quiet else None)


# -- helpers that run inside the database namespace (this file, with a hidden flag) ----------

STARTUP, SSLREQ, GSSREQ = 196608, 80877103, 80877104
ERROR_57P03 = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
ERROR_57P03 = b"E" + struct.pack("!i", 4 + len(ERROR_57P03)) + ERROR_57P03


def fake_server(host: str, port: int, backlog: int, out: str, max_seconds: float) -> None:
    """A PostgreSQL that is always starting up. Prints 'ready', listens when a line comes on
    stdin (so that it opens within a millisecond of the orchestrator's word, not after an
    interpreter's start-up), prints 'listening'; on SIGTERM (or after max_seconds) stops and
    writes [[accepted, kind, login], ...] to out."""
    import asyncio

    print("ready", flush=True)
    if not sys.stdin.readline():
        return  # the orchestrator is gone

    events: list[tuple[float, str, float]] = []

    async def handle(reader, writer) -> None:
        t, kind, t_login = time.time(), "bare", 0.0
        try:
            for _ in range(4):  # SSLRequest, GSSENCRequest, then the startup message
                length, code = struct.unpack("!ii", await asyncio.wait_for(reader.readexactly(8), 5))
                if not 8 <= length <= 10000:
                    break
                if length > 8:
                    await asyncio.wait_for(reader.readexactly(length - 8), 5)
                if code in (SSLREQ, GSSREQ):
                    writer.write(b"N")
                    await writer.drain()
                    continue
                if code == STARTUP:
                    kind, t_login = "login", time.time()
                    writer.write(ERROR_57P03)
                    await writer.drain()
                else:
                    kind = "other"
                break
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            pass
        finally:
            events.append((t, kind, t_login))
            writer.close()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        server = await asyncio.start_server(handle, host, port, backlog=backlog, reuse_address=True)
        print("listening", flush=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), max_seconds)
        server.close()
        await asyncio.sleep(0.2)  # let the handlers of accepted connections log

    asyncio.run(main())
    with open(out, "w") as f:
        json.dump(events, f)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


def capture(iface: str, port: int, out: str, max_seconds: float) -> None:
    """Kernel timestamps (CLOCK_REALTIME) of every SYN (without ACK) to `port` that `iface`
    receives, until SIGTERM or max_seconds; written to out as native doubles."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    # classic BPF over the IP header (SOCK_DGRAM packet socket: offset 0 is the IP header):
    # TCP, not a fragment, destination port, SYN set and ACK clear
    prog = [(0x30, 0, 0, 9), (0x15, 0, 9, 6), (0x28, 0, 0, 6), (0x45, 7, 0, 0x1FFF),
            (0xB1, 0, 0, 0), (0x48, 0, 0, 2), (0x15, 0, 4, port), (0x50, 0, 0, 13),
            (0x54, 0, 0, 0x12), (0x15, 0, 1, 0x02), (0x06, 0, 0, 0x40000), (0x06, 0, 0, 0)]
    filt = (_SockFilter * len(prog))(*[_SockFilter(*i) for i in prog])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    s.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HL", len(prog), ctypes.addressof(filt)))  # SO_ATTACH_FILTER
    s.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((iface, 0x0800))
    s.settimeout(0.2)
    stamps = array.array("d")
    print("capturing", flush=True)
    end = time.monotonic() + max_seconds
    while not stop and time.monotonic() < end:
        try:
            _, anc, _, addr = s.recvmsg(64, socket.CMSG_SPACE(16))
        except (socket.timeout, InterruptedError):
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == 35:
                sec, ns = struct.unpack("qq", data[:16])
                stamps.append(sec + ns / 1e9)
    with open(out, "wb") as f:
        stamps.tofile(f)


# -- the two namespaces, nftables, the private PostgreSQL -------------------------------------

def _setns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)


NFT_RULES = f"""
table ip wff {{
    counter syns {{}}
    counter conns {{}}
    chain count {{
        type filter hook prerouting priority -150; policy accept;
        tcp dport {PORT} tcp flags & (syn | ack) == syn counter name "syns"
        tcp dport {PORT} ct state new counter name "conns"
    }}
    chain nat {{
        type nat hook prerouting priority -100; policy accept;
    }}
}}
"""


class Lab:
    """The namespaces, nft counters and the real PostgreSQL; cleanup() undoes all of it."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.w, self.d = f"wff{pid}w", f"wff{pid}d"
        self.veth_w, self.veth_d = f"wff{pid}a", f"wff{pid}b"
        self.tmp = tempfile.mkdtemp(prefix=f"wff-{pid}-")
        self.pgdata = os.path.join(self.tmp, "pg")
        self.pg_started = False
        self.postmaster = 0
        self.procs: list[subprocess.Popen] = []  # helpers to stop at cleanup

    def dx(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.d, *argv]

    def setup(self) -> None:
        run(["ip", "netns", "add", self.w])
        run(["ip", "netns", "add", self.d])
        run(["ip", "link", "add", self.veth_w, "netns", self.w, "type", "veth", "peer", "name", self.veth_d,
             "netns", self.d])
        for ns, dev, addr in ((self.w, self.veth_w, W_ADDR), (self.d, self.veth_d, DB_ADDR)):
            run(["ip", "-n", ns, "addr", "add", f"{addr}/{PREFIX}", "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        subprocess.run(self.dx("nft", "-f", "-"), input=NFT_RULES, text=True, check=True, timeout=30)
        self._start_postgres()

    def _start_postgres(self) -> None:
        os.chmod(self.tmp, 0o755)
        os.mkdir(self.pgdata, 0o700)
        shutil.chown(self.pgdata, "postgres", "postgres")
        run(["runuser", "-u", "postgres", "--", f"{PGBIN}/initdb", "-D", self.pgdata, "-A", "trust", "-U",
             "postgres", "--no-sync", "-E", "UTF8"], quiet=True, timeout=120)
        with open(os.path.join(self.pgdata, "pg_hba.conf"), "a") as f:
            f.write(f"host all all {W_ADDR}/32 trust\n")
        opts = (f"-c listen_addresses={DB_ADDR} -c port={REAL_PORT} -c unix_socket_directories={self.pgdata} "
                "-c max_connections=100 -c fsync=off -c synchronous_commit=off -c shared_buffers=32MB")
        self.pg_started = True
        run(self.dx("runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", self.pgdata, "-l",
                    os.path.join(self.pgdata, "log"), "-o", opts, "-w", "-t", "60", "start"), quiet=True, timeout=90)
        with open(os.path.join(self.pgdata, "postmaster.pid")) as f:
            self.postmaster = int(f.readline())

    def join_waiters(self) -> None:
        _setns(self.w)

    def counters(self) -> dict[str, int]:
        out = run(self.dx("nft", "-j", "list", "counters", "table", "ip", "wff"), quiet=True).stdout
        return {c["counter"]["name"]: c["counter"]["packets"] for c in json.loads(out)["nftables"] if "counter" in c}

    def overflows(self) -> int:
        """TcpExt ListenOverflows of the database namespace."""
        with open(f"/proc/{self.postmaster}/net/netstat") as f:
            rows = [ln.split() for ln in f if ln.startswith("TcpExt:")]
        return int(rows[1][rows[0].index("ListenOverflows")])

    def redirect(self, on: bool) -> None:
        if on:
            run(self.dx("nft", "add", "rule", "ip", "wff", "nat", "tcp", "dport", str(PORT), "redirect", "to",
                        f":{REAL_PORT}"))
        else:
            run(self.dx("nft", "flush", "chain", "ip", "wff", "nat"))

    def helper(self, mode: str, *args: str) -> subprocess.Popen:
        """Start this script in D with a hidden mode; wait (bounded) for its first line."""
        p = subprocess.Popen(self.dx(PY, os.path.abspath(__file__), mode, *args), stdout=subprocess.PIPE,
                             stdin=subprocess.PIPE, text=True)
        self.procs.append(p)
        self.line(p)
        return p

    @staticmethod
    def line(p: subprocess.Popen, timeout: float = 30) -> str:
        ready, _, _ = select.select([p.stdout], [], [], timeout)
        text = p.stdout.readline().strip() if ready else ""
        if not text:
            raise SystemExit(f"fleet: helper {p.args[4:6]} did not answer")
        return text

    def stop_helper(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
        with contextlib.suppress(ValueError):
            self.procs.remove(p)

    def cleanup(self) -> None:
        for p in list(self.procs):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.stop_helper(p)
        if self.pg_started:
            r = subprocess.run(self.dx("runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", self.pgdata,
                                       "-m", "immediate", "-w", "-t", "20", "stop"),
                               capture_output=True, timeout=60, check=False)
            if r.returncode != 0 and self.postmaster:
                with contextlib.suppress(OSError):
                    os.kill(self.postmaster, signal.SIGKILL)
        for ns in (self.w, self.d):  # the veth pair and the nft table go with them
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def remove_stale() -> None:
    """What a run killed with SIGKILL left (its pid is gone): the processes in its namespaces
    (PostgreSQL, waiters), the namespaces, its temp dir."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30, check=False).stdout
    for name, pid in re.findall(r"^(wff(\d+)[wd])\b", out, re.M):
        if os.path.exists(f"/proc/{pid}"):
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30,
                              check=False).stdout.split()
        for p in pids:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(p), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)
        log(f"removed stale namespace {name} ({len(pids)} processes in it killed)")
    tmp = tempfile.gettempdir()
    for d in os.listdir(tmp):
        m = re.match(r"wff-(\d+)-", d)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)


# -- the waiters ------------------------------------------------------------------------------

def tool_argv(tool: str, tree: str, timeout: int) -> tuple[list[str], dict[str, str]]:
    url = f"postgres://postgres@{DB_ADDR}:{PORT}/postgres"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if tool.startswith("waitfor"):
        env["PYTHONPATH"] = tree
        extra = ["--interval", "1s"] if tool == "waitfor-1s" else []
        return [PY, os.path.join(tree, "bin", "waitfor"), "run", "-q", "-t", f"{timeout}s", *extra, url, "--",
                DATE, "+%s.%N"], env
    if tool == "wait-for-it":
        return ["/usr/bin/wait-for-it", "-q", "-h", DB_ADDR, "-p", str(PORT), "-t", str(timeout), "--", DATE,
                "+%s.%N"], env
    if tool == "bash-tcp":
        check = f"(exec 3<>/dev/tcp/{DB_ADDR}/{PORT}) 2>/dev/null"
    elif tool == "pg_isready":
        check = f"pg_isready -q -h {DB_ADDR} -p {PORT} -U postgres -d postgres -t 2"
    else:
        raise SystemExit(f"fleet: --tools: unknown tool {tool!r} (one of {', '.join(TOOLS)})")
    loop = f"for i in $(seq {timeout}); do {check} && exec {DATE} +%s.%N; sleep 1; done; exit 124"
    return ["bash", "-c", loop], env


def session_cpu(sids: set[int]) -> dict[int, float]:
    """utime + stime + cutime + cstime (seconds) of every live process, summed by session,
    for the sessions in `sids`. Each waiter leads a session of its own, so this is the CPU of
    its whole process tree so far: wait-for-it's and the shell loops' work is in children
    (timeout, subshells, pg_isready, sleep) whose time reaches a waiter's own counters only
    when they are reaped."""
    out = dict.fromkeys(sids, 0.0)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        sid = int(fields[3])
        if sid in out:
            out[sid] += sum(int(x) for x in fields[11:15]) / TICK
    return out


def session_mem(sids: set[int]) -> dict[int, tuple[float, float]]:
    """VmRSS and Pss (smaps_rollup) in MiB, summed over each session's processes."""
    out = dict.fromkeys(sids, (0.0, 0.0))
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        rss = pss = 0.0
        try:
            with open(f"/proc/{d}/stat") as f:
                sid = int(f.read().rsplit(")", 1)[1].split()[3])
            if sid not in out:
                continue
            with open(f"/proc/{d}/status") as f:
                rss = next((int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")), 0) / 1024
            with open(f"/proc/{d}/smaps_rollup") as f:
                pss = next((int(ln.split()[1]) for ln in f if ln.startswith("Pss:")), 0) / 1024
        except (OSError, ValueError, IndexError):
            continue
        r0, p0 = out[sid]
        out[sid] = (r0 + rss, p0 + pss)
    return out


class Fleet:
    """N waiters of one tool: started on a schedule, reaped with their rusage."""

    def __init__(self, argv: list[str], env: dict[str, str], n: int, outdir: str) -> None:
        self.argv, self.env, self.n, self.outdir = argv, env, n, outdir
        self.pids: dict[int, int] = {}  # pid -> index
        self.started: dict[int, float] = {}  # index -> time.time()
        self.cpu: dict[int, float] = {}  # index -> user+sys of its life (rusage)
        self.status: dict[int, int] = {}

    def start(self, i: int) -> None:
        # posix_spawn (vfork-like, no Python between fork and exec): this process must keep
        # up with the rollout's schedule while the waiters already started load the CPU
        devnull = os.devnull
        actions = [(os.POSIX_SPAWN_OPEN, 0, devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, os.path.join(self.outdir, f"{i}.out"), os.O_WRONLY | os.O_CREAT, 0o644),
                   (os.POSIX_SPAWN_OPEN, 2, devnull, os.O_WRONLY, 0)]
        pid = os.posix_spawnp(self.argv[0], self.argv, self.env, file_actions=actions, setsid=True)
        self.started[i] = time.time()
        self.pids[pid] = i

    def reap(self) -> None:
        for pid in list(self.pids):
            try:
                got, status, ru = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                got, status, ru = pid, -1, None
            if got:
                i = self.pids.pop(pid)
                self.status[i] = status
                self.cpu[i] = ru.ru_utime + ru.ru_stime if ru else float("nan")

    def kill_all(self) -> None:
        for pid in list(self.pids):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        end = time.monotonic() + 10
        while self.pids and time.monotonic() < end:
            self.reap()
            time.sleep(0.02)

    def app_starts(self) -> dict[int, float]:
        out = {}
        for i in range(self.n):
            with contextlib.suppress(OSError, ValueError), open(os.path.join(self.outdir, f"{i}.out")) as f:
                out[i] = float(f.read().split()[0])
        return out


def bins(stamps: list[float], t0: float, t1: float, width: float = 0.1) -> tuple[float, float]:
    """(peak, mean) count per `width` bin of the stamps within [t0, t1)."""
    k = int((t1 - t0) / width)
    if k < 1:
        return float("nan"), float("nan")
    counts = [0] * k
    for t in stamps:
        j = int((t - t0) / width)
        if 0 <= j < k:
            counts[j] += 1
    return max(counts), sum(counts) / k


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def sub_run(lab: Lab, tool: str, n: int, a: argparse.Namespace) -> dict:
    argv, env = tool_argv(tool, a.tree, a.timeout)
    outdir = tempfile.mkdtemp(prefix=f"{tool}-{n}-", dir=lab.tmp)
    fleet = Fleet(argv, env, n, outdir)
    cap_file, fake_file = os.path.join(outdir, "syns.bin"), os.path.join(outdir, "fake.json")
    total = a.rollout + a.settle + a.window + a.phase_seconds + a.starting_seconds + a.ready_seconds + 180
    cap = lab.helper("--_capture", lab.veth_d, str(PORT), cap_file, str(total))
    fake = lab.helper("--_fake-server", DB_ADDR, str(PORT), str(BACKLOG), fake_file, str(total))
    over: list[tuple[float, int]] = []
    r: dict = {"tool": tool, "n": n}
    try:
        c0 = lab.counters()
        t0 = time.time()
        sched = [t0 + (a.rollout * i / (n - 1) if n > 1 else 0) for i in range(n)]
        nxt, cpu0, mem = 0, None, []
        last_sample = 0.0
        # phase 1: port closed. It lasts --phase-seconds, and at least --settle + --window s
        # after the last waiter was started (the schedule can fall behind on a loaded
        # machine); the window starts --settle s after the last start: every waiter has
        # waited >= 3 s there, unless the machine was too busy to start it in time.
        w0 = t1 = float("inf")
        hard_end = t0 + max(a.rollout + a.settle + a.window, a.phase_seconds) + 120
        while True:
            now = time.time()
            if now >= hard_end:
                raise SystemExit("fleet: phase 1 ran 120 s past its schedule (the waiters could not be started)")
            while nxt < n and sched[nxt] <= now:
                fleet.start(nxt)
                nxt += 1
                if nxt == n:
                    w0 = time.time() + a.settle
                    t1 = max(t0 + a.phase_seconds, w0 + a.window)
            if now >= t1:
                break
            if cpu0 is None and now >= w0:
                cpu0 = (now, session_cpu(set(fleet.pids)))
            if now - last_sample >= 0.1:
                fleet.reap()
                over.append((now, lab.overflows()))
                last_sample = now
            time.sleep(0.005 if nxt < n else 0.02)
        now = time.time()
        fleet.reap()
        cpu1 = (now, session_cpu(set(fleet.pids)))
        mem = list(session_mem(set(fleet.pids)).values())
        # phase 2: starting up
        c1 = lab.counters()
        t1 = time.time()
        if a.starting_seconds > 0:
            fake.stdin.write("go\n")
            fake.stdin.flush()
            lab.line(fake)
        t_open = time.time()
        t2 = t_open + a.starting_seconds
        while time.time() < t2:
            now = time.time()
            over.append((now, lab.overflows()))
            fleet.reap()
            time.sleep(0.1)
        c2 = lab.counters()
        t_c2 = time.time()  # connections accepted after this are in phase 3's counts
        # phase 3: ready
        lab.redirect(True)
        t_ready = time.time()
        over.append((t_ready, lab.overflows()))
        lab.stop_helper(fake)
        t3 = t_ready + a.ready_seconds
        while fleet.pids and time.time() < t3:
            over.append((time.time(), lab.overflows()))
            fleet.reap()
            time.sleep(0.05)
        t_end = time.time()
        over.append((t_end, lab.overflows()))
        c3 = lab.counters()
        left = len(fleet.pids)
        fleet.kill_all()
    finally:
        fleet.kill_all()
        lab.stop_helper(fake)
        lab.stop_helper(cap)
        with contextlib.suppress(OSError):
            lab.redirect(False)

    with open(cap_file, "rb") as f:
        syns = array.array("d", f.read()).tolist()
    events = []  # none when phase 2 was skipped
    if os.path.exists(fake_file):
        with open(fake_file) as f:
            events = json.load(f)
    # the fake server keeps accepting until the redirect is in place, a little after the
    # counters were read: only what it accepted before then is compared with them
    logins = [e[2] for e in events if e[1] == "login" and e[0] <= t_c2]
    bare = sum(1 for e in events if e[1] == "bare" and e[0] <= t_c2)

    def ov(t_a: float, t_b: float) -> int:
        before = [v for t, v in over if t <= t_a] or [over[0][1]]
        upto = [v for t, v in over if t <= t_b] or [before[-1]]
        return upto[-1] - before[-1]

    waiter_s = sum(max(0.0, t1 - s) for s in fleet.started.values())
    win = [t for t in syns if w0 <= t < t1]
    pk1, mean1 = bins(syns, w0, t1)
    pk2, mean2 = bins(syns, t_open, t2)
    pkl, meanl = bins(logins, t_open, t2)
    pk2b, mean2b = bins(syns, t_open + 2, t2)
    starts = fleet.app_starts()
    lat = sorted(t - t_ready for t in starts.values() if t >= t_ready)
    early = sum(1 for t in starts.values() if t < t_ready)
    p1_syns = c1["syns"] - c0["syns"]
    captured_p1 = sum(1 for t in syns if t0 - 1 <= t < t1)
    # over the waiters alive at both ends of the window (a waiter that ended inside it would
    # take its whole CPU out of the sum)
    both = set(cpu0[1]) & set(cpu1[1]) if cpu0 else set()
    cpu_window = (sum(cpu1[1][p] - cpu0[1][p] for p in both) / (cpu1[0] - cpu0[0]) * 100 * n / max(len(both), 1)
                  if cpu0 and cpu1[0] > cpu0[0] else float("nan"))
    r.update({
        "phase1_s": t1 - t0, "rollout_s": max(fleet.started.values()) - t0, "phase2_s": t2 - t_open, "window_s": t1 - w0,
        "p1_syns": p1_syns, "p1_syn_rate": ratio(p1_syns, waiter_s),
        "p1_syn_rate_after3": ratio(len(win), n * (t1 - w0)), "p1_captured": ratio(captured_p1, p1_syns),
        "p1_peak_mean": ratio(pk1, mean1),
        "p2_syns": c2["syns"] - c1["syns"], "p2_conns": c2["conns"] - c1["conns"], "p2_logins": len(logins),
        "p2_bare": bare, "p2_syn_rate": ratio(c2["syns"] - c1["syns"], n * (t2 - t_open)),
        "p2_conns_per_login": ratio(c2["conns"] - c1["conns"], len(logins)),
        "p2_syns_per_login": ratio(c2["syns"] - c1["syns"], len(logins)),
        "p2_logins_rate": ratio(len(logins), n * (t2 - t_open)),
        "p2_peak_mean": ratio(pk2, mean2), "p2_peak_mean_after2": ratio(pk2b, mean2b),
        "p2_login_peak_mean": ratio(pkl, meanl),
        "p2_first_login_s": (min(logins) - t_open) if logins else float("nan"),
        "p2_open_syns": ratio(sum(1 for t in syns if t_open <= t < t_open + 2), n),
        "p3_syns": c3["syns"] - c2["syns"], "p3_conns": c3["conns"] - c2["conns"],
        "overflow_p1": ov(t0, t1), "overflow_open": ov(t_open, t_open + 2), "overflow_p2": ov(t_open, t2),
        "overflow_ready": ov(t_ready, t_ready + 2), "overflow_p3": ov(t_ready, t_end),
        "ready_p50": pct(lat, 50) if lat else float("nan"), "ready_p95": pct(lat, 95) if lat else float("nan"),
        "ready_max": max(lat) if lat else float("nan"), "apps_after_ready": len(lat), "apps_early": early,
        "apps_never": n - len(starts), "left_at_end": left,
        "fleet_cpu_pct": cpu_window, "cpu_s_per_waiter": median(list(fleet.cpu.values())),
        "rss_mib": median([m[0] for m in mem if m[0] > 0]), "pss_mib": median([m[1] for m in mem if m[1] > 0]),
    })
    return r


ROWS = [
    ("port closed: SYNs per waiter per second (whole phase)", "p1_syn_rate"),
    ("port closed: SYNs per waiter per second in the window", "p1_syn_rate_after3"),
    ("port closed: peak 100 ms / mean in the window", "p1_peak_mean"),
    ("port closed: SYNs the capture saw / nft", "p1_captured"),
    ("starting up: SYNs per waiter per second", "p2_syn_rate"),
    ("starting up: logins per waiter per second", "p2_logins_rate"),
    ("starting up: TCP connections per login (ct new)", "p2_conns_per_login"),
    ("starting up: SYNs per login", "p2_syns_per_login"),
    ("starting up: bare connections (no startup message)", "p2_bare"),
    ("starting up: peak 100 ms / mean, SYNs", "p2_peak_mean"),
    ("starting up: peak 100 ms / mean, SYNs, after its first 2 s", "p2_peak_mean_after2"),
    ("starting up: peak 100 ms / mean, logins", "p2_login_peak_mean"),
    ("starting up: first login after the port opens, s", "p2_first_login_s"),
    ("starting up: SYNs per waiter in the first 2 s", "p2_open_syns"),
    ("accept-queue overflows, first 2 s after the port opens", "overflow_open"),
    ("accept-queue overflows, whole starting-up phase", "overflow_p2"),
    ("accept-queue overflows, first 2 s after ready", "overflow_ready"),
    ("ready -> app start p50, s", "ready_p50"),
    ("ready -> app start p95, s", "ready_p95"),
    ("ready -> app start max, s", "ready_max"),
    ("apps started after ready / before (early) / never", "apps"),
    ("fleet CPU, % of one core (port closed, in the window)", "fleet_cpu_pct"),
    ("CPU s per waiter, whole life (median)", "cpu_s_per_waiter"),
    ("RSS per waiter (its processes' sum), MiB, median", "rss_mib"),
    ("PSS per waiter (its processes' sum), MiB, median", "pss_mib"),
]


def report(results: list[dict]) -> str:
    out = []
    for n in sorted({r["n"] for r in results}):
        rs = [r for r in results if r["n"] == n]
        rows = []
        for label, key in ROWS:
            if key == "apps":
                rows.append([label] + [f"{r['apps_after_ready']}/{r['apps_early']}/{r['apps_never']}" for r in rs])
            else:
                rows.append([label] + [r[key] for r in rs])
        out.append(f"N = {n}")
        out += [f"  {r['tool']}: rollout {r['rollout_s']:.1f} s, phase 1 {r['phase1_s']:.1f} s (window: the last "
                f"{r['window_s']:.1f} s), phase 2 {r['phase2_s']:.1f} s" for r in rs]
        out.append(table(["figure"] + [r["tool"] for r in rs], rows))
        out.append("")
    return "\n".join(out)


def summarize(paths: list[str]) -> str:
    """min-max of each figure over several runs' --json files, per tree, N and tool."""
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for r in data["results"]:
            groups.setdefault((data["meta"]["commit"], r["n"], r["tool"]), []).append(r)

    def span(vals: list[float]) -> str:
        vals = [v for v in vals if v == v]
        if not vals:
            return "-"
        lo, hi = min(vals), max(vals)
        f = (lambda v: f"{v:.3g}" if abs(v) < 10 else f"{v:.0f}")  # noqa: E731
        return f(lo) if f(lo) == f(hi) else f"{f(lo)}-{f(hi)}"

    out = []
    for n in sorted({k[1] for k in groups}):
        keys = sorted(k for k in groups if k[1] == n)
        rows = []
        for label, key in ROWS:
            if key == "apps":
                continue
            rows.append([label] + [span([r.get(key, float("nan")) for r in groups[k]]) for k in keys])
        out.append(f"N = {n}, min-max over runs: " + "; ".join(f"{k[2]} @ {k[0]}: {len(groups[k])} run(s)"
                                                              for k in keys))
        out.append(table(["figure"] + [f"{k[2]} ({k[0]})" for k in keys], rows))
        out.append("")
    return "\n".join(out)


def ensure_peers(tools: list[str]) -> None:
    missing = []
    if "wait-for-it" in tools and not os.path.exists("/usr/bin/wait-for-it"):
        missing.append("wait-for-it")
    if "pg_isready" in tools and not shutil.which("pg_isready"):
        missing.append("postgresql-client")
    if missing:
        log(f"installing {' '.join(missing)} with apt-get")
        run(["apt-get", "install", "-y", "-q", *missing], quiet=True, timeout=600)
    for exe in ("ip", "nft", "runuser", f"{PGBIN}/initdb", f"{PGBIN}/pg_ctl"):
        if not shutil.which(exe):
            raise SystemExit(f"fleet: {exe} not found (packages iproute2, nftables, util-linux, postgresql-15)")


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_fake-server":
        host, port, backlog, out, secs = sys.argv[2:7]
        fake_server(host, int(port), int(backlog), out, float(secs))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--summarize":
        if len(sys.argv) < 3:
            raise SystemExit("usage: fleet.py --summarize RESULT.json ...")
        print(summarize(sys.argv[2:]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--_capture":
        iface, port, out, secs = sys.argv[2:6]
        capture(iface, int(port), out, float(secs))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="50,200", help="fleet sizes, comma-separated (default 50,200)")
    ap.add_argument("--tools", default=DEFAULT_TOOLS, help=f"comma-separated, of {', '.join(TOOLS)} "
                    f"(default {DEFAULT_TOOLS})")
    ap.add_argument("--tree", default=REPO, help="the waitfor source tree to run (PYTHONPATH; default this checkout)")
    ap.add_argument("--phase-seconds", type=float, default=10.0, help="length of phases 1 and 2 (default 10)")
    ap.add_argument("--rollout", type=float, default=8.0, help="waiters are started evenly over this many seconds "
                    "(default 8); phase 1 lasts at least this + 5 s")
    ap.add_argument("--starting-seconds", type=float, default=None, help="length of phase 2, the 'starting up' "
                    "server (default: --phase-seconds); 0 skips it: the closed port opens straight into ready")
    ap.add_argument("--settle", type=float, default=3.0, help="the phase-1 window starts this long after the "
                    "last waiter was started (default 3; more on a loaded machine, where start-up lags)")
    ap.add_argument("--window", type=float, default=5.0, help="the phase-1 window lasts at least this long "
                    "(default 5)")
    ap.add_argument("--label", default="", help="what the tree is, for the report (default: its git commit)")
    ap.add_argument("--ready-seconds", type=float, default=30.0, help="bound on phase 3 (default 30)")
    ap.add_argument("--timeout", type=int, default=120, help="each waiter's own timeout, seconds (default 120)")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args()
    try:
        ns = [int(x) for x in a.n.split(",")]
    except ValueError:
        ap.error(f"--n: not a list of numbers: {a.n!r}")
    if any(x < 1 or x > 2000 for x in ns):
        ap.error("--n: each between 1 and 2000")
    tools = [t for t in a.tools.split(",") if t]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"--tools: unknown tool {t!r} (one of {', '.join(TOOLS)})")
    if not os.path.exists(os.path.join(a.tree, "bin", "waitfor")) and any(t.startswith("waitfor") for t in tools):
        ap.error(f"--tree: no bin/waitfor in {a.tree}")
    if a.starting_seconds is None:
        a.starting_seconds = a.phase_seconds
    if a.starting_seconds < 0 or a.starting_seconds > 600:
        ap.error("--starting-seconds: between 0 and 600")
    if a.phase_seconds <= 0 or a.ready_seconds <= 0 or a.window <= 0.5 or a.rollout < 0 or a.settle < 0:
        ap.error("--phase-seconds, --ready-seconds must be > 0, --window > 0.5, --rollout and --settle >= 0")
    if max(a.phase_seconds, a.rollout, a.settle, a.window, a.ready_seconds) > 600:
        ap.error("--phase-seconds, --rollout, --settle, --window, --ready-seconds: at most 600")
    if os.geteuid() != 0:
        raise SystemExit("fleet: needs root (network namespaces, nftables, initdb as postgres)")
    a.tree = os.path.abspath(a.tree)
    ensure_peers(tools)
    remove_stale()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _exit_on_signal)
    commit = subprocess.run(["git", "-C", a.tree, "log", "-1", "--format=%h"], capture_output=True, text=True,
                            check=False).stdout.strip() or a.label or "not a git checkout"
    if a.label:
        commit = f"{a.label} ({commit})" if commit != a.label else commit
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "tree": a.tree, "commit": commit,
            "cpus": os.cpu_count(), "load_start": open("/proc/loadavg").read().split()[:3]}
    log(f"tree {a.tree} at {commit}; load {' '.join(meta['load_start'])}")
    lab = Lab()
    results = []
    try:
        lab.setup()
        lab.join_waiters()
        for n in ns:
            for tool in tools:
                log(f"N={n} {tool}")
                results.append(sub_run(lab, tool, n, a))
                time.sleep(2)  # let TIME_WAIT and conntrack settle a little between sub-runs
    finally:
        lab.cleanup()
    meta["load_end"] = open("/proc/loadavg").read().split()[:3]
    print(f"fleet benchmark, {meta['date']}, tree {a.tree} ({commit}), {meta['cpus']} CPUs, "
          f"load {' '.join(meta['load_start'])} -> {' '.join(meta['load_end'])}")
    print(report(results))
    data = {"meta": meta, "results": results}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(data, f, indent=1)
    save("fleet", data)


if __name__ == "__main__":
    main()
