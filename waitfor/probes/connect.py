"""Connecting to host:port, for every kind: the name looked up within the attempt, its
addresses raced, and the one wording of why a connect failed.

Every address a name resolves to gets its chance within one attempt, as wait-for-it does
not (it tries only what `nc`/bash's /dev/tcp picks). The addresses are raced as Happy
Eyeballs does (RFC 8305 section 5): the next one is started when the previous fails or after
a short stagger, the earlier ones stay in flight, the first accepted connection wins. An
address that drops SYNs therefore costs a stagger, not the attempt (issue 16 D13). Go's
dialSerial (what wait4x and dockerize inherit) shares the budget instead, but gives each
address at least 2 s: with waitfor's 2 s attempt that is the whole budget, and a later
address is never tried. The scheduler's own non-blocking connects (waitfor.wait.engine)
follow the same rule with `order` and `stagger`; the tcp kind, http and the drivers'
TCP-first step use `connect` and `open_connection`.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time

from waitfor.probes.base import NotReady, Refused
from waitfor.probes.limits import LOCAL, local_limit, local_reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def connect(host: str, port: int, timeout: float) -> str:
    """Connect to any address of host:port and close again. Return the address that accepted.

    Raises Refused when nothing listens (or the name does not resolve yet, as in compose
    before the other container exists), NotReady for slower failures such as time-outs.
    """
    sock, addr = open_connection(host, port, timeout)
    sock.close()
    return addr


def open_connection(host: str, port: int, timeout: float) -> tuple[socket.socket, str]:
    """As connect(), but keep the connected socket (blocking, its timeout what is left of
    the attempt): -> (socket, address). The driver probes that need their own socket
    (mysql, http) use this."""
    deadline = time.monotonic() + timeout
    infos = resolve(host, port, timeout)
    sock, addr = race(order([(family, addr) for family, _, _, _, addr in infos]), deadline)
    sock.setblocking(True)
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    return sock, addr[0]


# RFC 8305 section 5: the Connection Attempt Delay is 250 ms by default and must not be
# under 10 ms. With many addresses it shrinks, so that each one starts within the attempt.
STAGGER = 0.25
MIN_STAGGER = 0.01


def order(addrs: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """(family, address) pairs with the families interleaved (RFC 8305 section 4), each
    family in getaddrinfo's order (RFC 6724): a dead IPv6 path delays IPv4 by one stagger."""
    if len({family for family, _ in addrs}) < 2:
        return addrs
    first = addrs[0][0]
    ours = [a for a in addrs if a[0] == first]
    other = [a for a in addrs if a[0] != first]
    out: list[tuple[int, Any]] = []
    for i in range(max(len(ours), len(other))):
        out += ours[i:i + 1] + other[i:i + 1]
    return out


def stagger(left: float, pending: int) -> float:
    """How long to wait before starting the next of `pending` addresses (the started ones
    still in flight), with `left` seconds of the attempt to go: 250 ms, or less when the
    addresses would not all start in time (each keeps at least one share of what is left)."""
    return max(MIN_STAGGER, min(STAGGER, left / (pending + 1)))


def race(addrs: list[tuple[int, Any]], deadline: float) -> tuple[socket.socket, Any]:
    """Connect to the first of `addrs` ((family, address) pairs) that accepts before
    `deadline` (time.monotonic()): -> (its non-blocking socket, its address). Raises as
    connect() does; a time-out names what was still in flight."""
    flying: dict[int, tuple[socket.socket, Any]] = {}
    poller = select.poll()
    pending, last = list(addrs), None
    next_start = 0.0
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if pending and (not flying or now >= next_start):
                family, addr = pending.pop(0)
                try:
                    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
                except OSError as e:  # EMFILE and the like: waitfor's limit, not the dependency's
                    last = local_limit(e) or NotReady(f"cannot open a socket: {e.strerror}")
                    continue
                err = sock.connect_ex(addr)
                if err == 0:
                    return sock, addr
                if err != errno.EINPROGRESS:
                    sock.close()
                    last = connect_error(err, addr)
                    continue  # a failure starts the next address at once
                flying[sock.fileno()] = (sock, addr)
                poller.register(sock, select.POLLOUT)
                next_start = now + stagger(deadline - now, len(pending))
                continue
            if not flying:
                break
            until = min(next_start, deadline) if pending else deadline
            # poll() takes milliseconds: round up, so that it never wakes too early
            for fd, _ in poller.poll(-(-max(until - now, 0.0) * 1000 // 1)):
                sock, addr = flying.pop(fd)
                poller.unregister(fd)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    return sock, addr
                sock.close()
                last = connect_error(err, addr)
                next_start = now  # a failure starts the next address at once
    finally:
        for sock, _ in flying.values():  # the winner has left `flying`
            sock.close()
    if flying:
        raise NotReady(f"connect timed out ({timed_out([a for _, a in flying.values()])})")
    raise last or NotReady(f"connect timed out ({', '.join(fmt_addr(a) for _, a in addrs[:1])})")


def timed_out(addrs: list[Any]) -> str:
    """The addresses still unanswered at the deadline, for a reason: the first, and how
    many more (a name may have dozens)."""
    more = f" and {len(addrs) - 1} more" if len(addrs) > 1 else ""
    return f"{fmt_addr(addrs[0])}{more}"


def resolve(host: str, port: int | None, timeout: float) -> list[Any]:
    """getaddrinfo(host, port), bounded by `timeout`: getaddrinfo has no timeout of its own,
    and a resolver that does not answer can hold it for 5 s per try and name server.

    An IP address needs no lookup. A name is looked up in a daemon thread that is left
    behind if it does not answer in time. Raises Refused when the name does not resolve
    (yet), NotReady when the lookup times out.
    """
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        pass
    box: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as e:
            box.append(e)
        done.set()

    threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    if not done.wait(max(timeout, 0.001)):
        raise NotReady(f"resolving {host} timed out after {timeout:.3g}s")
    result = box[0]
    if isinstance(result, socket.gaierror):
        raise Refused(f"cannot resolve {host}: {result.strerror}")
    if isinstance(result, BaseException):
        raise NotReady(f"cannot resolve {host}: {result}")
    return result


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
    if err in LOCAL:
        return NotReady(f"{local_reason(err)} ({where})")
    if isinstance(addr, str):  # unix
        if err in (errno.ENOENT, errno.ECONNREFUSED):
            return Refused(f"{where}: {os.strerror(err)}")
        if err == errno.EAGAIN:  # listen backlog full: it is there, but busy
            return NotReady(f"{where}: backlog full")
        return NotReady(f"{where}: {os.strerror(err)}")
    if err == errno.ECONNREFUSED:
        return Refused(f"connection refused ({where})")
    return NotReady(f"{os.strerror(err)} ({where})")


def refusal(exc: BaseException, host: str, port: int) -> Refused | None:
    """If a driver's `exc` (or what it wraps: causes, exceptions in its args or its
    `exception`, as pika nests them) is a refused connect: the Refused that says so, in the
    words of the tcp probe. Drivers connect by themselves (one connection per attempt, no
    TCP connect of theirs first), and a refused one must still be polled as one."""
    seen: list[BaseException] = [exc]
    for e in seen:
        if isinstance(e, ConnectionRefusedError) or (isinstance(e, OSError) and e.errno == errno.ECONNREFUSED):
            break
        if len(seen) < 16:
            # (pika's connector errors keep theirs in `.exception`)
            seen.extend(x for x in (e.__cause__, e.__context__, getattr(e, "exception", None),
                                    *getattr(e, "args", ()))
                        if isinstance(x, BaseException) and x not in seen)
    else:
        if "Connection refused" not in str(exc):  # libpq, redis-py keep only the words
            return None
    refused = connect_error(errno.ECONNREFUSED, (host, port))
    return refused if isinstance(refused, Refused) else None
