"""One deadline for every blocking step of one attempt, enforced by a watchdog thread.

One of the means of the rule for bounding an attempt (waitfor.probes.base): the attempt's
sockets are registered with `Deadline.guard()`, and at the deadline one shared watchdog
thread shuts them down, which wakes any thread blocked on them at once.
"""

from __future__ import annotations

import threading

from waitfor.probes.base import NotReady, Refused, describe

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from waitfor.probes.base import Probe


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
    _watcher: threading.Thread | None
    _watch_heap: list[tuple[float, int, Deadline]]
_watcher = None
_watch_heap = []
_watch_cond = threading.Condition()
