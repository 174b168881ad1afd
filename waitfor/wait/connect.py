"""The scheduler's non-blocking connects (waitfor.wait.engine): a tcp or unix dependency
is probed by them alone, and a driver kind's by them while nothing listens (its kind's
`connect_target`), so that a closed port costs one refused SYN in the scheduler's own
thread: no pool thread, no driver, no extra connection once it answers.

A name's addresses are raced, as waitfor.probes.connect.race does (RFC 8305, issue 16 D13):
the next one starts when one fails or after connect.stagger(), the first to accept wins.
Over loopback the kernel knows a closed port's answer before connect() returns, so most
attempts end without a round through poll(); the others are registered with the
scheduler's poll object and reported back through `done(key, address, None)` (accepted)
or `done(key, None, why)`.
"""

from __future__ import annotations

import _socket
import errno
import select
import socket

from waitfor.probes.base import NotReady
from waitfor.probes.connect import connect_error, fmt_addr, order, stagger
from waitfor.probes.limits import local_limit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from waitfor.config.model import Dependency


class Target:
    """Where one dependency's attempts connect, parsed once: host and port, or a unix
    socket's path; its addresses (None: a name, looked up at each attempt, as a compose
    service may appear later); and its connects in flight."""

    __slots__ = ("addrs", "conns", "deadline", "failure", "host", "last", "pending", "port")

    def __init__(self, target: tuple[str, int] | str) -> None:
        if isinstance(target, str):
            self.host, self.port = target, 0
            self.addrs: list[tuple] | None = [(socket.AF_UNIX, target)]
        else:
            self.host, self.port = target
            self.addrs = numeric(self.host, self.port)
        # the connects in flight (fd -> (socket, address)), the addresses not started yet,
        # and the attempt's deadline
        self.conns: dict[int, tuple[_socket.socket, tuple | str]] = {}
        self.pending: list[tuple] = []
        self.deadline = 0.0
        self.last: NotReady | None = None  # this attempt's last failure
        # the last connect failure (errno, address, its reason), reused while it repeats
        self.failure: tuple[int, tuple | str, NotReady] | None = None

    def error(self, err: int, addr: tuple | str) -> NotReady:
        """The probes' own reason (connect_error), made once for as long as it stays the
        same: a closed port is asked ~20 times a second, and its reason does not change."""
        cached = self.failure
        if cached is not None and cached[0] == err and cached[1] == addr:
            return cached[2]
        exc = connect_error(err, addr)
        self.failure = (err, addr, exc)
        return exc


def target_of(dep: Dependency) -> tuple[Target | None, bool]:
    """Where a dependency's attempts connect first, from its kind (parsed once), and whether
    an accepted connect is its whole answer. tcp and unix (READY_ON_CONNECT): probed by the
    scheduler's connects alone. The other kinds with a target: while nothing listens there,
    the scheduler's connect answers (Refused) without a pool thread; once something does,
    the kind's own probe runs in the pool, one connection per attempt, until it is refused
    again. None for an inverted dependency, whose probe is the inverted kind's."""
    if dep.invert:
        return None, False
    from waitfor.probes import table
    from waitfor.urls import urlsplit

    kind = table.load(dep.kind)
    try:
        where = kind.connect_target(urlsplit(dep.url))
    except ValueError:
        return None, False
    if where is None:
        return None, False
    return Target(where), kind.READY_ON_CONNECT


def numeric(host: str, port: int) -> list[tuple] | None:
    """An IP address needs no lookup; a name is looked up in the pool at each attempt (it
    may appear later, as a compose service does)."""
    for family, addr in ((socket.AF_INET, (host, port)), (socket.AF_INET6, (host, port, 0, 0))):
        try:  # inet_pton first: getaddrinfo on a str imports the idna codec (2 ms of start-up)
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return [(family, addr)]
    try:  # e.g. a scoped IPv6 address (fe80::1%eth0)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return None
    return [(family, addr) for family, _, _, _, addr in infos]


def accepted_detail(addr: tuple | str) -> str:
    return "accepted" if isinstance(addr, str) else f"connected to {addr[0]}"


class Connects:
    """The connects in flight, keyed by the caller's job. `done(key, addr, why)` says how
    an attempt's race ended; `later(key, when)` asks for next(key, target) at `when`."""

    def __init__(self, poll: select.poll,
                 done: Callable[[Hashable, tuple | str | None, NotReady | None], None],
                 later: Callable[[Hashable, float], None], clock: Callable[[], float]) -> None:
        self.poll, self.done, self.later, self.clock = poll, done, later, clock
        self.polled: dict[int, tuple[Hashable, Target]] = {}  # fd of a connect in flight -> its job
        # fds closed in this turn of the loop while an event of theirs may still be ahead in
        # poll()'s list (a race's losers): a new socket may have their number already
        self.stale: set[int] = set()

    def start(self, key: Hashable, t: Target, addrs: list[tuple], deadline: float) -> None:
        """Race `addrs` until `deadline`."""
        t.pending, t.deadline = order(addrs), deadline
        self.next(key, t)

    def next(self, key: Hashable, t: Target) -> None:
        """Start the next address (and the one after, as each fails at once)."""
        while t.pending:
            family, addr = t.pending.pop(0)
            try:
                # SOCK_NONBLOCK: non-blocking from the start, one system call less per attempt;
                # the C socket type (_socket) that socket.socket wraps in Python-level
                # __init__ and close(): two frames less, at ~20 attempts a second each
                sock = _socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            except OSError as e:  # EMFILE and the like: ours, not the dependency's (issue 10 B7)
                t.last = local_limit(e) or NotReady(f"cannot open a socket: {e.strerror}")
                continue
            err = sock.connect_ex(addr)
            if err == errno.EINPROGRESS:
                # Over loopback the kernel has the answer before connect() returns: a closed
                # port's refusal is known now, without a round through poll (issue 12's cost).
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or errno.EINPROGRESS
            if err == errno.EINPROGRESS:
                fd = sock.fileno()
                t.conns[fd] = (sock, addr)
                self.poll.register(fd, select.POLLOUT)
                self.polled[fd] = (key, t)
                if t.pending:
                    now = self.clock()
                    self.later(key, now + stagger(t.deadline - now, len(t.pending)))
                return
            sock.close()
            if err == 0:
                self.drop(t)  # the others still in flight lost the race
                self.done(key, addr, None)
                return
            t.last = t.error(err, addr)
        if not t.conns:
            self.done(key, None, t.last or NotReady(f"connect timed out ({fmt_addr((t.host, t.port))})"))

    def ready(self, fd: int) -> None:
        """poll() reported `fd`: accepted (the race is won), or the next address at once."""
        key, t = self.polled.pop(fd)
        sock, addr = t.conns.pop(fd)
        self.poll.unregister(fd)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        sock.close()
        if err == 0:
            self.drop(t)
            self.done(key, addr, None)
            return
        t.last = t.error(err, addr)
        self.next(key, t)

    def drop(self, t: Target) -> list[tuple | str]:
        """Abandon `t`'s race; -> the addresses that were still connecting."""
        t.pending = []
        addrs = [addr for _, addr in t.conns.values()]  # in the order they were started
        while t.conns:
            fd, (sock, _) = t.conns.popitem()
            if self.polled.pop(fd, None) is not None:
                self.poll.unregister(fd)
            self.stale.add(fd)
            sock.close()
        return addrs
