"""`--probe-addr HOST:PORT`: a small HTTP endpoint for Kubernetes httpGet probes.

- /livez    200 while the supervisor and the app run (and during the wait), else 503
- /readyz   200 once the app runs and no watched dependency is failing, else 503
- /startupz 200 once every dependency was ready and the app was started, else 503

Responses are short JSON made of public names and states only (state.public_name: the
user's `name:`, else kind and host:port, or `command#N`), never targets, arguments or
reasons, so no secret can leak through an unauthenticated port; and a body passes
waitfor.output's mask as it is sent (a `name:` may hold a secret too).

The port is exposed to the network, so it is built to be attacked (issue 10 C8, C9): one
thread multiplexes every client with `selectors` (epoll), as a small event-loop server
such as nginx or the Go net/http poller would, instead of http.server's thread per
connection (1,482 idle connections were 1,427 threads). At most MAX_CLIENTS connections
are open at once, and never more than a quarter of RLIMIT_NOFILE, so the watch, its probes
and the supervisor keep their file descriptors; when full, the oldest unfinished client
is dropped for the new one (slowloris cannot lock the probes out). Each client has
CLIENT_TIMEOUT seconds in total to send its request; the listen backlog is SOMAXCONN, so
a burst waits in the kernel (which costs us no fd), not in a backlog of 5. A client that
resets or goes away is one line at verbose level, never a traceback.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.output import Log
    from waitfor.supervise.state import Status

MAX_CLIENTS = 64
CLIENT_TIMEOUT = 2.0  # seconds from accept to a complete request: kubelet sends it at once
MAX_REQUEST = 8192  # bytes of request line and headers; kubelet's are ~200
PATHS = ("/livez", "/readyz", "/startupz")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def client_cap(limit: int = MAX_CLIENTS) -> int:
    """At most `limit` clients, and at most a quarter of the fd limit (`ulimit -n 256`: 64;
    `ulimit -n 32`: 8): the rest is the reserve of the watch and the supervisor."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return limit
    return max(1, min(limit, soft // 4))


class _Client:
    __slots__ = ("buf", "deadline", "out", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline
        self.buf = b""
        self.out = b""  # the response still to send


class ProbeServer:
    def __init__(self, addr: tuple[str, int], status: Status, log: Log, max_clients: int = MAX_CLIENTS,
                 client_timeout: float = CLIENT_TIMEOUT) -> None:
        self.status, self.log = status, log
        self.max_clients = client_cap(max_clients)
        self.client_timeout = client_timeout
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart while old ones linger
            sock.bind(addr)
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.server_address = sock.getsockname()
        self.clients: dict[int, _Client] = {}  # fd -> client, in accept order (oldest first)
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, None)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._accepting_paused_until = 0.0
        self._last_note = 0.0
        self._quiet = 0
        self.thread = threading.Thread(target=self.serve_forever, name="probe-addr", daemon=True)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> ProbeServer:
        self.thread.start()
        return self

    def shutdown(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(2)

    def server_close(self) -> None:
        for c in list(self.clients.values()):
            self._close(c)
        for s in (self.sock, self._wake_r, self._wake_w):
            s.close()
        self.selector.close()

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            # Idle (no client, accepting): sleep until a client or shutdown()'s wake-up byte
            # comes, so an idle sidecar or supervisor has no timer waking it every second.
            now = time.monotonic()
            wake = [c.deadline for c in self.clients.values()]
            if self._accepting_paused_until:
                wake.append(self._accepting_paused_until)
            timeout = max(0.0, min(wake) - now) if wake else None
            try:
                events = self.selector.select(timeout)
            except OSError:  # EINTR is retried by Python; anything else: try again shortly
                events = []
                time.sleep(0.05)
            if self._accepting_paused_until and time.monotonic() >= self._accepting_paused_until:
                self._accepting_paused_until = 0.0
                self.selector.register(self.sock, selectors.EVENT_READ, None)
            for key, mask in events:
                try:
                    self._event(key, mask)
                except Exception as e:  # noqa: BLE001 - a bug with one client must not end the endpoint
                    self._note(f"probe endpoint: internal error with a client: {type(e).__name__}")
                    if key.data is not None:
                        self._close(key.data)
            self._expire(time.monotonic())

    def _event(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.fileobj is self.sock:
            self._accept()
        elif key.fileobj is self._wake_r:
            try:
                self._wake_r.recv(64)
            except OSError:
                pass
        elif key.data is not None:
            client: _Client = key.data
            if mask & selectors.EVENT_READ:
                self._read(client)
            elif mask & selectors.EVENT_WRITE:
                self._write(client)

    # ------------------------------------------------------------------ clients

    def _accept(self) -> None:
        now = time.monotonic()
        if now < self._accepting_paused_until:
            return
        for _ in range(self.max_clients):  # a burst: accept several per wake-up, but bounded
            try:
                sock, _addr = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of fds or memory: leave the rest in the kernel's backlog a moment
                    # rather than spin on a listener that stays readable (level-triggered:
                    # it is taken out of the selector until the pause ends).
                    self._accepting_paused_until = now + 0.1
                    self.selector.unregister(self.sock)
                    self._note(f"probe endpoint: cannot accept a client: {e.strerror}")
                return
            if len(self.clients) >= self.max_clients:  # full: only now, with a client in hand
                self._evict_oldest()
            sock.setblocking(False)
            client = _Client(sock, now + self.client_timeout)
            self.clients[sock.fileno()] = client
            self.selector.register(sock, selectors.EVENT_READ, client)
            # A probe sends its request with the handshake: answer it now, before a flood
            # behind it in the backlog can evict it.
            self._read(client)

    def _evict_oldest(self) -> None:
        """Full: drop the oldest client that has not got its answer yet (a slow one, since
        a real probe is answered the moment its request arrives)."""
        oldest = next(iter(self.clients.values()))
        self._close(oldest)

    def _read(self, c: _Client) -> None:
        try:
            data = c.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._note(f"probe endpoint: client went away: {e.strerror or type(e).__name__}")
            self._close(c)
            return
        if not data:
            self._close(c)  # closed before a complete request: nothing to answer
            return
        c.buf += data
        head, sep, _ = c.buf.partition(b"\r\n\r\n")
        if not sep:
            head, sep, _ = c.buf.partition(b"\n\n")
        if sep:
            self._respond(c, *self._answer(head))
        elif len(c.buf) > MAX_REQUEST:
            self._respond(c, 431, {"error": "request too large"})

    def _answer(self, head: bytes) -> tuple[int, dict[str, object], bool]:
        line = head.split(b"\n", 1)[0].strip().split()
        if len(line) != 3 or not line[2].startswith(b"HTTP/"):
            return 400, {"error": "bad request"}, False
        method, target = line[0], line[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return 405, {"error": "method not allowed"}, False
        head_only = method == b"HEAD"
        path = target.decode("latin-1")
        if path not in PATHS:
            return 404, {"error": "not found", "paths": list(PATHS)}, head_only
        snap = self.status.snapshot()
        ok = bool(snap[{"/livez": "live", "/readyz": "ready", "/startupz": "started"}[path]])
        body = {"status": "ok" if ok else "fail", "phase": snap["phase"], "failing": snap["failing"]}
        return (200 if ok else 503), body, head_only

    def _respond(self, c: _Client, code: int, body: dict[str, object], head_only: bool = False) -> None:
        from waitfor.output import masked_data

        data = (json.dumps(masked_data(body)) + "\n").encode()  # a dependency's own name: masked too
        head = (f"HTTP/1.1 {code} {_REASONS.get(code, '')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n").encode()
        c.out = head + (b"" if head_only else data)
        self._write(c)

    def _write(self, c: _Client) -> None:
        try:
            sent = c.sock.send(c.out, socket.MSG_NOSIGNAL)  # EPIPE, not SIGPIPE, if it went away
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            self._note(f"probe endpoint: client went away: {e.strerror or type(e).__name__}")
            self._close(c)
            return
        c.out = c.out[sent:]
        if not c.out:
            self._close(c)
        else:  # a full send buffer (the answer is < 1 KiB: rare); the deadline still holds
            self.selector.modify(c.sock, selectors.EVENT_WRITE, c)

    def _expire(self, now: float) -> None:
        for c in [c for c in self.clients.values() if c.deadline <= now]:
            self._close(c)  # too slow: a probe's request arrives at once (slowloris defence)

    def _close(self, c: _Client) -> None:
        fd = c.sock.fileno()
        if fd >= 0:
            self.clients.pop(fd, None)
            try:
                self.selector.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        c.sock.close()

    def _note(self, message: str) -> None:
        """One line at verbose level for client trouble, at most one a second (a reset
        storm is no log flood): it is the client's business, not the app's."""
        now = time.monotonic()
        if now - self._last_note < 1.0:
            self._quiet += 1
            return
        more = f" (and {self._quiet} more)" if self._quiet else ""
        self._last_note, self._quiet = now, 0
        self.log.debug(message + more)


def serve(addr: tuple[str, int], status: Status, log: Log) -> ProbeServer:
    try:
        server = ProbeServer(addr, status, log)
    except OSError as e:
        from waitfor.errors import UsageError

        raise UsageError(f"--probe-addr {addr[0]}:{addr[1]}: cannot listen: {e.strerror}") from None
    server.start()
    log.debug(f"serving /livez /readyz /startupz on {addr[0]}:{addr[1]}")
    return server
