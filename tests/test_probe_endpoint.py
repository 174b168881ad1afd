"""The probe endpoint (`--probe-addr`: /livez, /readyz, /startupz): its answers follow the
supervisor's phases, and it stays up under hostile clients (idle and slow connections,
floods under a low fd limit, resets, random requests).

Black-box: the real CLI supervising a real app, real TCP clients on 127.0.0.1. Threads and
fds are read from /proc/PID of the waitfor process. Bounds are generous ("bounded", not
"fast"): the figures are in bench/probe_flood.py.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from helpers.core import APP_TRAPS_TERM, Listener, env_with_state, free_port, get, spawn, wait_until, write_config


def test_probe_endpoint_follows_the_phases(tmp_path):
    dep = Listener()
    probe_port = free_port()
    cfg = write_config(tmp_path, f"""
        timeout: 20s
        watch: {{interval: 100ms, failure_threshold: 1000}}
        dependencies:
          - name: db
            url: http://user:s3cretpw@127.0.0.1:{dep.port}/
            status: 2xx
          - tcp://127.0.0.1:{dep.port}
    """)
    base = f"http://127.0.0.1:{probe_port}"
    proc = spawn("run", "-c", cfg, "--probe-addr", f"127.0.0.1:{probe_port}", "--", *APP_TRAPS_TERM,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_with_state(tmp_path))
    try:
        # While waiting: alive, not ready, not started.
        wait_until(lambda: _reachable(base + "/livez"))
        assert get(base + "/livez")[0] == 200
        code, body = get(base + "/readyz")
        assert code == 503 and body["phase"] == "waiting"
        assert get(base + "/startupz")[0] == 503
        assert get(base + "/nope")[0] == 404
        # The dependency comes up (a real HTTP server on the same port).
        server = _http_server(dep.port)
        wait_until(lambda: get(base + "/readyz")[0] == 200)
        assert get(base + "/startupz")[0] == 200
        # A watched dependency fails: not ready, still alive, app untouched.
        server.shutdown()
        server.server_close()
        code, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(get(base + "/readyz")))
        assert body["failing"] and "s3cretpw" not in json.dumps(body)
        assert get(base + "/livez")[0] == 200
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert "app-got-TERM" in out
    assert proc.returncode == 0
    assert "s3cretpw" not in err


def _reachable(url) -> bool:
    try:
        get(url)
        return True
    except OSError:
        return False


def _http_server(port):
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    http.server.HTTPServer.allow_reuse_address = True
    server = http.server.HTTPServer(("127.0.0.1", port), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ------------------------------------------------------------- hostile clients


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _start(tmp_path, listener, *extra, nofile=None, watch="200ms"):
    probe_port = free_port()
    cfg = write_config(tmp_path, f"""
        watch: {{interval: {watch}, failure_threshold: 2}}
        dependencies: [{{name: db, url: "tcp://127.0.0.1:{listener.port}"}}]
    """)

    def limit():
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    env = env_with_state(tmp_path)
    proc = spawn("run", "-c", cfg, "--probe-addr", f"127.0.0.1:{probe_port}", *extra, "--", *APP_TRAPS_TERM,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=limit)
    base = f"http://127.0.0.1:{probe_port}"
    wait_until(lambda: _status(base + "/readyz") == 200, timeout=15)
    return proc, probe_port, base


def _status(url):
    try:
        return get(url)[0]
    except OSError:
        return None


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=15)


def _connect_many(port: int, n: int, workers: int = 16) -> list[socket.socket]:
    """n connections, made by `workers` threads at once (blocking connects, as a client
    flood would: a small listen backlog delays them, SYN retries and all)."""
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
            with lock:
                out.append(s)

    ts = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return out


@pytest.fixture
def enough_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096)
    if want < 2000:
        pytest.skip(f"this test opens ~1,300 sockets; RLIMIT_NOFILE hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_connections_hold_no_threads_and_readyz_still_answers(tmp_path, listener, enough_fds):
    proc, port, base = _start(tmp_path, listener)
    try:
        before = threads_of(proc.pid)
        idle = _connect_many(port, 300)
        assert len(idle) == 300
        time.sleep(0.5)
        threads, fds = threads_of(proc.pid), fds_of(proc.pid)
        start = time.monotonic()
        assert _status(base + "/readyz") == 200
        took = time.monotonic() - start
        for s in idle:
            s.close()
        # One thread serves every client (before: one per connection, 300+); fds are capped.
        assert threads <= before + 2, (before, threads)
        assert fds < 64 + 40, fds
        assert took < 2.0  # bounded, not a timing claim: before, up to 11 s for a 1,000 burst
        assert proc.poll() is None
    finally:
        _stop(proc)


def test_a_slow_client_is_dropped_quickly(tmp_path, listener):
    proc, port, _ = _start(tmp_path, listener)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\n")  # and never the rest
            start = time.monotonic()
            assert s.recv(100) == b""  # closed by the server, before our own 10 s timeout
            assert time.monotonic() - start < 5
    finally:
        _stop(proc)


def test_a_client_flood_under_a_low_fd_limit_does_not_stop_a_healthy_app(tmp_path, listener, enough_fds):
    proc, port, base = _start(tmp_path, listener, nofile=256)
    stop = threading.Event()
    held: list[socket.socket] = []

    def flood():
        while not stop.is_set():  # keep ~1000 connections open, reopening what the server drops
            held.extend(_connect_many(port, 1000 - len(held), workers=300))
            for s in list(held):
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        held.remove(s)
                        s.close()
                except BlockingIOError:
                    pass
                except OSError:
                    held.remove(s)
                    s.close()
            time.sleep(0.05)

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        time.sleep(8.0)  # 40 watch rounds at 200 ms, failure threshold 2 (before: exit 69 in ~5 s)
        assert proc.poll() is None, "the watch must not fail (and stop the app) for want of fds"
        wait_until(lambda: _status(base + "/readyz") == 200, timeout=10)
    finally:
        stop.set()
        t.join(5)
        for s in held:
            s.close()
        _out, err = _stop(proc)
    assert proc.returncode == 0, err
    assert "Too many open files" not in err and "stopping the app" not in err, err


def _rst(port: int, payload: bytes) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close() sends RST
    if payload:
        s.sendall(payload)
    s.close()


def test_client_resets_are_at_most_a_line_at_verbose_level(tmp_path, listener):
    for verbose in ((), ("-v",)):
        proc, port, base = _start(tmp_path, listener, *verbose, watch="30s")
        try:
            for i in range(20):
                _rst(port, b"" if i % 3 == 0 else b"GET /readyz HTTP/1.1\r\n" if i % 3 == 1
                     else b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(10):  # a big response the client never reads, then a reset
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
                s.sendall(b"GET /livez HTTP/1.1\r\n\r\n")
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            time.sleep(0.5)
            assert _status(base + "/readyz") == 200
        finally:
            _out, err = _stop(proc)
        assert "Traceback" not in err and "Error" not in err, err
        lines = [line for line in err.splitlines() if "probe endpoint" in line]
        if verbose:
            assert len(lines) <= 30, lines
        else:
            assert lines == [], lines
        assert proc.returncode == 0


def test_the_endpoint_still_speaks_http(tmp_path, listener):
    proc, port, base = _start(tmp_path, listener, watch="30s")
    try:
        for path, code in (("/livez", 200), ("/readyz", 200), ("/startupz", 200), ("/nope", 404),
                           ("/readyz?verbose=1", 200)):
            assert _status(base + path) == code
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"HEAD /livez HTTP/1.0\r\n\r\n")
            reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.") and b" 200 " in reply and reply.endswith(b"\r\n\r\n")
        for request, code in ((b"POST /livez HTTP/1.1\r\n\r\n", b"405"), (b"garbage\r\n\r\n", b"400"),
                              (b"GET /" + b"a" * 9000, b"431")):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(request)
                assert s.recv(4096).split()[1] == code
    finally:
        _stop(proc)


# ------------------------------------------------------------- random requests, in-process

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

from waitfor.output import Log  # noqa: E402
from waitfor.supervise.probe_server import ProbeServer  # noqa: E402
from waitfor.supervise.state import Status  # noqa: E402


@pytest.fixture(scope="module")
def server():
    srv = ProbeServer(("127.0.0.1", 0), Status(None), Log(verbosity=-2)).start()
    yield srv
    srv.shutdown()
    srv.server_close()


REQUESTS = hs.one_of(
    hs.binary(max_size=300),
    hs.builds(lambda m, p, v, h: m + b" " + p + b" " + v + b"\r\n" + h + b"\r\n\r\n",
              hs.sampled_from([b"GET", b"HEAD", b"POST", b"", b"G\x00T"]),
              hs.sampled_from([b"/readyz", b"/livez", b"/startupz", b"/", b"/readyz?x", b"*"]) | hs.binary(max_size=40),
              hs.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9", b""]),
              hs.binary(max_size=100)),
)


@given(request=REQUESTS, reset=hs.booleans())
def test_any_request_gets_an_answer_or_a_close_and_the_server_lives_on(server, request, reset):
    port = server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if request:
            s.sendall(request)
        if not reset:
            s.shutdown(socket.SHUT_WR)  # an incomplete request then ends: the server closes
            reply = s.recv(4096)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 ")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /livez HTTP/1.1\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 ")
    assert server.thread.is_alive() and len(server.clients) <= server.max_clients
