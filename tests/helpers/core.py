"""What most tests share: the one way to run waitfor in a subprocess (`waitfor` to run it to
the end, `spawn` to start it in the background), the environments it runs in, free ports, and
real local listeners (TCP on 127.0.0.1 and ::1, HTTP, a Unix socket) that can start late.
No network mocks. The `tcp_server`, `http_server`, `listener` and `config_file` fixtures
built on these are in tests/conftest.py."""

import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
WAITFOR = [PY, "-m", "waitfor"]  # the real CLI, as the tests run it

# A supervised app that says it got SIGTERM (on stdout) and exits 0 then; runs until stopped.
APP_TRAPS_TERM = ["sh", "-c", 'trap "echo app-got-TERM; exit 0" TERM; while :; do sleep 0.05; done']


def clean_env(**extra):
    """The environment without any WAITFOR_* variable of the caller, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITFOR_")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def bare_env(**extra):
    """Only PATH and PYTHONPATH (this tree), plus `extra`: for tests where any variable of the
    developer's own (a *_FILE one, a locale) could take part."""
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **extra}


def repo_env(**extra):
    """The caller's environment with PYTHONPATH set to this tree (for waitfor started from
    another directory, by unshare or by a shell), plus `extra`."""
    return dict(os.environ, PYTHONPATH=str(REPO), **extra)


def waitfor(*args, env=None, timeout=30, cwd=None, input=None, prefix=(), **popen):
    """Run `python -m waitfor ARGS` (after `prefix`, e.g. unshare's argv) to the end and return
    the CompletedProcess; `.took` is how long it ran, in seconds. Text mode and both streams
    captured unless `popen` says otherwise (text=False, stdout=..., stderr=...); `env`
    defaults to clean_env()."""
    if "stdout" not in popen and "stderr" not in popen:
        popen.setdefault("capture_output", True)
    popen.setdefault("text", True)
    t0 = time.monotonic()
    r = subprocess.run([*map(str, prefix), *WAITFOR, *map(str, args)], env=clean_env() if env is None else env,
                       cwd=cwd, timeout=timeout, input=input, **popen)
    r.took = time.monotonic() - t0
    return r


def spawn(*args, env=None, prefix=(), **popen):
    """Start `python -m waitfor ARGS` in the background: the Popen (its `.t0` is when). Streams
    and text mode are as `popen` says (subprocess.Popen's defaults otherwise); `env` defaults
    to clean_env()."""
    t0 = time.monotonic()
    proc = subprocess.Popen([*map(str, prefix), *WAITFOR, *map(str, args)],
                            env=clean_env() if env is None else env, **popen)
    proc.t0 = t0
    return proc


def free_port(family=socket.AF_INET, host="127.0.0.1") -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, step=0.05):
    """The first true value of predicate(), polled every `step` s; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def get(url):
    """GET url: (status, JSON body), also for an HTTP error status (the probe endpoint's answers)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def write_config(tmp_path, text) -> str:
    """tmp_path/waitfor.yaml with the (dedented) text; its path as a string."""
    path = tmp_path / "waitfor.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def env_with_state(tmp_path):
    """The caller's environment with the supervisor's state file in tmp_path."""
    return {**os.environ, "WAITFOR_STATE_FILE": str(tmp_path / "state.json")}


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Listener:
    """A real TCP listener that can be opened and closed on the same port (the kernel's
    backlog accepts; nothing reads)."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.sock = None

    def open(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(128)
        return self

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class TcpServer:
    """A real TCP listener on (host, port) that accepts and closes connections,
    started after `delay` seconds. Counts accepted connections."""

    def __init__(self, host="127.0.0.1", port=None, delay=0.0):
        self.host = host
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.port = port or free_port(self.family, host)
        self.delay, self.accepted = delay, 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        if not self.delay:
            self._ready.wait(5)
        return self

    def _serve(self):
        if self._stop.wait(self.delay):
            return
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(16)
        s.settimeout(0.05)
        self._ready.set()
        while not self._stop.is_set():
            try:
                conn, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.accepted += 1
            conn.close()
        s.close()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers by the server's `routes`: path -> (status, body, headers). Records requests."""

    def _answer(self, with_body=True):
        srv = self.server
        srv.requests.append((self.command, self.path, dict(self.headers)))
        status, body, headers = srv.routes.get(self.path.split("?")[0], (404, b"nope", {}))
        if callable(status):
            status = status()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):
        self._answer()

    def do_HEAD(self):
        self._answer(with_body=False)

    def log_message(self, *a):
        pass


class HttpServer:
    """http.server on 127.0.0.1 or ::1 in a thread, optionally starting after `delay`."""

    def __init__(self, routes=None, host="127.0.0.1", delay=0.0):
        self.host, self.delay = host, delay
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.port = free_port(self.family, host)
        self.routes = routes if routes is not None else {"/": (200, b"ok", {})}
        self.requests = []
        self.httpd = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self):
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}"

    def _serve(self):
        if self._stop.wait(self.delay):
            return
        family = self.family

        class Server(http.server.ThreadingHTTPServer):
            address_family = family
            allow_reuse_address = True

        self.httpd = Server((self.host, self.port), Handler)
        self.httpd.routes, self.httpd.requests = self.routes, self.requests
        self.httpd.serve_forever(poll_interval=0.05)

    def __enter__(self):
        self._thread.start()
        if not self.delay:
            t = time.monotonic() + 5
            while self.httpd is None and time.monotonic() < t:
                time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        deadline = time.monotonic() + 5
        while self._thread.is_alive() and time.monotonic() < deadline:
            if self.httpd is not None:
                self.httpd.shutdown()
                self.httpd.server_close()
                break
            time.sleep(0.01)
        self._thread.join(5)


class UnixServer:
    """A Unix stream socket listener at `path`, created after `delay` seconds."""

    def __init__(self, path, delay=0.0):
        self.path, self.delay, self.accepted = str(path), delay, 0
        self._stop = threading.Event()
        self._up = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        if self._stop.wait(self.delay):
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        s.listen(16)
        s.settimeout(0.05)
        self._up.set()
        while not self._stop.is_set():
            try:
                conn, _ = s.accept()
            except socket.timeout:
                continue
            self.accepted += 1
            conn.close()
        s.close()

    def __enter__(self):
        self._thread.start()
        if not self.delay:
            self._up.wait(5)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


class CountingProxy:
    """A real TCP proxy to 127.0.0.1:`upstream` that counts the connections it accepts and
    those on which the client sent anything (a login: a driver speaks first, or answers
    the server's greeting). Listens on `port` (a free one if None) once started."""

    def __init__(self, upstream: int, port: int | None = None) -> None:
        self.upstream, self.port = upstream, port or free_port()
        self.connections = self.spoke = 0
        self._lock = threading.Lock()
        self._srv: socket.socket | None = None

    def start(self) -> "CountingProxy":
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._srv = srv
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._srv is not None:
            self._srv.close()

    def _accept(self) -> None:
        assert self._srv is not None
        while True:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
        except OSError:
            client.close()
            return
        spoke = threading.Event()

        def pipe(src: socket.socket, dst: socket.socket, counts: bool) -> None:
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    if counts and not spoke.is_set():
                        spoke.set()
                        with self._lock:
                            self.spoke += 1
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        back = threading.Thread(target=pipe, args=(server, client, False), daemon=True)
        back.start()
        pipe(client, server, True)
        back.join(5)
        client.close()
        server.close()
