"""The one small checker interface every kind implements (after wait4x's `checker.Checker`).

A probe is a callable `probe(timeout) -> detail`. It returns (a short detail string or
None) when the dependency is ready, and otherwise raises:

- `Refused`: nothing is there yet (connection refused, no such file, name does not resolve).
  Cheap to ask again, so the engine retries it at the fast, fixed `interval`.
- `NotReady`: something answered but is not ready (HTTP 503, "database system is starting
  up", wrong password, missing key). Retried with exponential backoff up to `max_interval`,
  so a service that is coming up is not hammered with handshakes.
- `Broken`: asking again cannot help (the command probe's program does not exist).
  Fails the dependency at once, as wait4x's non-retryable errors do.

Each kind's module defines:
  OPTIONS: dict of option name -> validator(value) -> parsed value (raise ValueError)
  SECRET_OPTIONS: option names whose values are secrets (masked everywhere)
  PORT: the default port, "required" when the URL must name one, None for kinds
        without host and port (file, unix, command)
  EXTRA / DRIVER: the pip extra and the module it provides, for driver kinds
  READY_ON_CONNECT: True when an accepted connect is the whole answer (tcp, unix): the
        scheduler then probes it in its own loop, without building a probe
  connect_target(parts) -> (host, port), a unix socket's path, or None: where an attempt
        connects first, when the URL says so plainly (None when in doubt: several hosts,
        a socket path in the query). While nothing listens there, the scheduler's own
        non-blocking connect answers `Refused` without a pool thread or a driver; once it
        accepts, the kind's probe runs with one connection of its own per attempt.
  probe_for(dep) -> Probe
"""

from __future__ import annotations

import errno
import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping
    from typing import Any, Protocol, TypeVar

    from waitfor.config.model import Dependency
    from waitfor.urls import SplitResult

    T = TypeVar("T")
    # a kind's OPTIONS: option name -> validator (value -> parsed value, ValueError)
    Options = Mapping[str, Callable[[Any], Any]]


class NotReady(Exception):
    """Not ready yet; retried with backoff."""


class Refused(NotReady):
    """Nothing is there yet; retried at the fast fixed interval."""


class Broken(Exception):
    """Retrying cannot help; the dependency fails at once."""


if TYPE_CHECKING:

    class Probe(Protocol):
        def __call__(self, timeout: float) -> str | None: ...

    class Kind(Protocol):
        """What a probe module provides (waitfor.probes.table checks every module against it).

        Members are read-only properties so that a module's plain globals satisfy them."""

        @property
        def OPTIONS(self) -> Options: ...
        @property
        def SECRET_OPTIONS(self) -> tuple[str, ...]: ...
        @property
        def PORT(self) -> int | str | None: ...
        @property
        def EXTRA(self) -> str | None: ...
        @property
        def DRIVER(self) -> str | None: ...
        @property
        def READY_ON_CONNECT(self) -> bool: ...

        def connect_target(self, parts: SplitResult) -> tuple[str, int] | str | None: ...
        def check_url(self, parts: SplitResult) -> None: ...
        def probe_for(self, dep: Dependency) -> Probe: ...
        def cancel(self) -> None: ...


def host_port(parts: SplitResult, default: int | None = None) -> tuple[str, int]:
    """The URL's host and port (the port `default` when it names none). config/targets.py
    has checked both, per the kind's PORT, before any probe is built."""
    host, port = parts.hostname, parts.port or default
    if host is None or port is None:
        raise ValueError("the URL names no host and port")  # unreachable after config
    return host, port


def password_of(dep: Dependency, parts: SplitResult) -> str | None:
    """The password: `password_file`'s content (a Docker or Kubernetes secret) when given,
    else the URL's (percent-decoded), else None."""
    if "password_file" in dep.options:
        from waitfor.config import validators as v

        return v.read_secret_file(dep.options["password_file"])
    if parts.password is None:
        return None
    from waitfor.urls import unquote

    return unquote(parts.password)


def tls_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    """The client TLS context of a dependency's `ca_file` and `insecure` options."""
    import ssl

    context = ssl.create_default_context(cafile=options.get("ca_file"))
    if options.get("insecure"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def tcp_target(parts: SplitResult, default: int | None) -> tuple[str, int] | None:
    """connect_target for a URL with one host (and the kind's default port): None for
    several hosts (`h1,h2`), none, or no port known."""
    try:
        port = parts.port or default
    except ValueError:
        return None
    host = parts.hostname
    if not host or not port or "," in parts.netloc:
        return None
    return host, port


def no_target(parts: SplitResult) -> None:
    """connect_target for kinds without a host and port of their own (file, command, dns)."""


def refusal(exc: BaseException, host: str, port: int) -> Refused | None:
    """If a driver's `exc` (or what it wraps: causes, exceptions in its args or its
    `exception`, as pika nests them) is a refused connect: the Refused that says so, in the words of
    the tcp probe. Drivers connect by themselves (one connection per attempt), and a
    refused one must still be polled as one."""
    seen: list[BaseException] = [exc]
    for e in seen:
        if isinstance(e, ConnectionRefusedError) or (isinstance(e, OSError) and e.errno == errno.ECONNREFUSED):
            break
        if len(seen) < 16:
            # (pika's connector errors keep theirs in `.exception`)
            seen.extend(x for x in (e.__cause__, e.__context__, getattr(e, "exception", None), *getattr(e, "args", ()))
                        if isinstance(x, BaseException) and x not in seen)
    else:
        if "Connection refused" not in str(exc):  # libpq, redis-py keep only the words
            return None
    exc_ = connect_error(errno.ECONNREFUSED, (host, port))
    return exc_ if isinstance(exc_, Refused) else None


def accept_url(parts: SplitResult) -> None:
    """check_url for kinds whose URL needs no check beyond host and port."""


def no_cancel() -> None:
    """cancel for kinds that leave nothing running when an attempt is abandoned."""


def describe(exc: BaseException) -> str:
    """A one-line reason from any exception, for logs and timeout reports."""
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    return " ".join(text.split())


# A driver's own timeout is set this much inside the attempt's deadline, so a silent
# server is reported in the driver's words ("Lost connection ... (timed out)") and the
# deadline only has to cut the slow drips short.
DRIVER_MARGIN = 0.1


class Deadline:
    """One deadline for every blocking step of one attempt (connect, TLS, request, each read).

    A socket timeout bounds each call, not the attempt: a server that sends its answer one
    byte per 0.5 s keeps a 1 s per-read timeout happy for ever (the "slow drip" that also
    defeats dockerize's and wait4x's http checks). The attempt's sockets are registered
    with `guard()`; at the deadline a shared watchdog thread shuts them down, which wakes
    any thread blocked in recv/send/handshake on them at once (with EOF or an error), so
    nothing the attempt started outlives it. `with Deadline(t) as d:` disarms it on exit.
    """

    def __init__(self, timeout: float) -> None:
        import time

        self.at = time.monotonic() + timeout
        self.timeout = timeout
        self.expired = False
        self._socks: list[socket.socket] = []

    def left(self, floor: float = 0.01) -> float:
        import time

        return max(self.at - time.monotonic(), floor)

    def guard(self, sock: socket.socket) -> socket.socket:
        """Shut `sock`'s connection down at the deadline (at once if it has passed).

        A duplicate of its fd is kept, not the object: TLS wrapping (http.client, PyMySQL)
        moves the fd to a new object, and shutdown() acts on the connection that every fd
        of it shares. Without a spare fd (EMFILE) the object itself is kept. Returns sock."""
        try:
            kept = sock.dup()
        except (OSError, NotImplementedError):  # EMFILE; an SSLSocket cannot be dup()ed
            kept = sock
        with _watch_cond:
            self._socks.append(kept)
            if self.expired:
                _shut(kept)
        return sock

    def __enter__(self) -> Deadline:
        import heapq

        global _watcher
        with _watch_cond:
            heapq.heappush(_watch_heap, (self.at, id(self), self))
            if _watcher is None or not _watcher.is_alive():
                _watcher = threading.Thread(target=_watch, name="probe deadlines", daemon=True)
                _watcher.start()
            _watch_cond.notify()
        return self

    def __exit__(self, *exc: object) -> None:
        with _watch_cond:  # the heap entry stays; at its time it finds nothing to shut
            socks, self._socks = self._socks, []
        for sock in socks:
            try:
                sock.close()
            except OSError:
                pass

    def reason(self, why: str) -> str:
        """The reason for a failure: the driver's own when it says it timed out (a silent
        server), else that the attempt's deadline cut a slow answer short."""
        if self.expired and "timed out" not in why:
            return f"timed out: no complete answer within {self.timeout:.3g}s"
        return why

    def expire(self) -> None:
        with _watch_cond:  # under the lock: __exit__ cannot close one of them meanwhile
            self.expired = True
            for sock in self._socks:
                _shut(sock)


def with_deadline(attempt: Callable[[float, Deadline], str],
                  before: Callable[[Deadline], None] | None = None) -> Probe:
    """A probe that runs `attempt(timeout, deadline)` under one Deadline, and says so when
    the deadline, not the server, ended it (`before(deadline)` first, if given)."""

    def probe(timeout: float) -> str:
        with Deadline(timeout) as d:
            if before is not None:
                before(d)
            try:
                return attempt(timeout, d)
            except Refused:  # nothing listens: nothing of the deadline's to add
                raise
            except NotReady as e:
                raise NotReady(d.reason(describe(e))) from None

    return probe


def close_quietly(thing: Any, *errors: type[BaseException]) -> None:
    """thing.close(), ignoring `errors` (OSError if none): closing must not mask the
    attempt's reason."""
    caught: tuple[type[BaseException], ...] = errors or (OSError,)
    try:
        thing.close()
    except caught:
        pass


def _shut(sock: socket.socket) -> None:
    import socket as _socket

    try:
        # socket.socket's own shutdown, not SSLSocket's (which would drop its TLS state
        # under the thread still reading): shuts the connection for every fd sharing it.
        _socket.socket.shutdown(sock, _socket.SHUT_RDWR)
    except OSError:
        pass


def _watch() -> None:
    import heapq
    import time

    while True:
        with _watch_cond:
            while not _watch_heap:
                _watch_cond.wait()
            at, _, d = _watch_heap[0]
            now = time.monotonic()
            if at > now:
                _watch_cond.wait(at - now)
                continue
            heapq.heappop(_watch_heap)
        d.expire()


if TYPE_CHECKING:
    import socket
    import ssl

    _watcher: threading.Thread | None
    _watch_heap: list[tuple[float, int, Deadline]]
_watcher = None
_watch_heap = []
_watch_cond = threading.Condition()


# ------------------------------------------------------------------ local resource limits

# Out of file descriptors (ulimit -n), of the system's files, of memory or buffers: the
# failure is waitfor's own, whatever the dependency does (issue 10 B7). The scheduler says
# the same for its own sockets (waitfor.wait.engine).
_LOCAL = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


def local_limit(exc: BaseException) -> NotReady | None:
    """If `exc`, what caused it, or its message is a local resource limit: the NotReady
    that says so, without blaming the dependency. Else None."""
    e: BaseException | None = exc
    for _ in range(8):
        if e is None:
            break
        if isinstance(e, OSError) and e.errno in _LOCAL:
            return NotReady(_local_reason(e.errno))
        e = e.__cause__ or e.__context__
    text = str(exc)
    for num in _LOCAL:  # drivers that keep only the words ("Error 24 connecting to ...")
        if os.strerror(num) in text:
            return NotReady(_local_reason(num))
    return None


def _local_reason(num: int) -> str:
    why = f"local resource limit: {os.strerror(num)} (in waitfor, not the dependency"
    if num == errno.EMFILE and _nofile > 0:
        why += f"; ulimit -n is {_nofile}"
    return why + ")"


def fmt_addr(addr: tuple[Any, ...] | str) -> str:
    """host:port, [v6]:port, or a unix socket's path: how reasons name an address."""
    if isinstance(addr, str):
        return addr
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_error(err: int, addr: tuple[Any, ...] | str) -> NotReady:
    """Why a connect to `addr` failed with errno `err`: the one wording of the tcp and unix
    probes and of the scheduler's own connects (waitfor.wait.engine). Nothing there yet
    (refused, or no socket file) is Refused, retried fast."""
    where = fmt_addr(addr)
    if err in _LOCAL:
        return NotReady(f"{_local_reason(err)} ({where})")
    if isinstance(addr, str):  # unix
        if err in (errno.ENOENT, errno.ECONNREFUSED):
            return Refused(f"{where}: {os.strerror(err)}")
        if err == errno.EAGAIN:  # listen backlog full: it is there, but busy
            return NotReady(f"{where}: backlog full")
        return NotReady(f"{where}: {os.strerror(err)}")
    if err == errno.ECONNREFUSED:
        return Refused(f"connection refused ({where})")
    return NotReady(f"{os.strerror(err)} ({where})")


def bounded(probe: Probe) -> Probe:
    """`probe`, with a local resource limit reported as one, whatever layer it came from."""

    def attempt(timeout: float) -> str | None:
        try:
            return probe(timeout)
        except Broken:
            raise
        except Exception as e:  # re-raised unless it is a local limit
            limit = local_limit(e)
            if limit is not None:
                raise limit from None
            raise

    return attempt


def preload_unwinder() -> None:
    """Load libgcc_s.so.1 now, while file descriptors are free, and note RLIMIT_NOFILE.

    At interpreter exit CPython ends a daemon thread that wakes (a pool thread, a
    reaper) with pthread_exit(), and glibc loads libgcc_s.so.1 on its first use to unwind
    the thread; if that dlopen finds no free fd (ulimit -n reached), glibc aborts the
    whole process ("libgcc_s.so.1 must be installed for pthread_exit to work", exit 134).
    Once loaded it is never opened again (the same glibc issue hits any program that
    exhausts its fds: https://sourceware.org/bugzilla/show_bug.cgi?id=13119)."""
    global _nofile
    import resource

    _nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        import ctypes

        ctypes.CDLL("libgcc_s.so.1")
    except (ImportError, OSError):  # musl (Alpine) has no such dlopen; nothing to do
        pass


_nofile = -1


# ------------------------------------------------------------------ asyncio drivers

_loops = threading.local()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on this thread's own event loop (postgres, nats), kept for the thread's
    next attempt: creating a loop per attempt (asyncio.run) costs three fds each time, and
    fails in the middle (with a traceback from its __del__) when none is left."""
    import asyncio

    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        try:
            loop = _new_loop()
        except OSError as e:
            coro.close()
            raise local_limit(e) or NotReady(f"cannot start an event loop: {e.strerror}") from None
        _loops.loop = loop
    try:
        return loop.run_until_complete(coro)
    finally:
        # as asyncio.run does: nothing of this attempt runs on into the next one
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _make_loop_class() -> type:
    import asyncio

    class Loop(asyncio.SelectorEventLoop):
        _built = False

        def __init__(self) -> None:
            super().__init__()
            self._built = True

        def __del__(self, *args: Any) -> None:
            # A loop that could not get its epoll fd or self-pipe (EMFILE) is half made:
            # without this, its __del__ prints a traceback.
            if self._built:
                super().__del__(*args)

    return Loop


def _new_loop() -> Any:  # the class is made on first use: no asyncio import at start-up
    global _loop_class
    if _loop_class is None:
        _loop_class = _make_loop_class()
    return _loop_class()


_loop_class: type | None = None
