"""tcp://host:port (or bare host:port): ready when a TCP connection is accepted.

Every address the name resolves to is tried in turn, as wait-for-it does not (it tries
only what `nc`/bash's /dev/tcp picks). Also the cheap first step of every driver probe.
"""

from __future__ import annotations

import socket
import threading
import time

from waitfor.probes.base import (
    NotReady,
    Refused,
    accept_url,
    connect_error,
    fmt_addr,
    host_port,
    local_limit,
    no_cancel,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

PORT = "required"
READY_ON_CONNECT = True  # probed by the scheduler's own connects (waitfor.wait.connect)
check_url = accept_url
cancel = no_cancel
SECRET_OPTIONS: tuple[str, ...] = ()
EXTRA = None  # no driver: nothing to install
DRIVER = None
OPTIONS: Options = {}


def connect(host: str, port: int, timeout: float) -> str:
    """Connect to any address of host:port and close again. Return the address that accepted.

    Raises Refused when nothing listens (or the name does not resolve yet, as in compose
    before the other container exists), NotReady for slower failures such as time-outs.
    """
    sock, addr = open_connection(host, port, timeout)
    sock.close()
    return addr


def open_connection(host: str, port: int, timeout: float) -> tuple[socket.socket, str]:
    """As connect(), but keep the connected socket: -> (socket, address). The driver
    probes that need their own socket (mysql, http) use this."""
    deadline = time.monotonic() + timeout
    infos = resolve(host, port, timeout)
    last: NotReady | None = None
    for family, stype, proto, _, addr in infos:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            sock = socket.socket(family, stype, proto)
        except OSError as e:  # EMFILE and the like: waitfor's limit, not the dependency's
            raise local_limit(e) or NotReady(f"cannot open a socket: {e.strerror}") from None
        try:
            sock.settimeout(remaining)
            sock.connect(addr)
            return sock, addr[0]
        except socket.timeout:
            last = NotReady(f"connect timed out ({fmt_addr(addr)})")
        except OSError as e:
            last = connect_error(e.errno, addr) if e.errno else NotReady(f"{e} ({fmt_addr(addr)})")
        sock.close()
    raise last or NotReady(f"connect timed out ({host}:{port})")


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


def connect_target(parts: SplitResult) -> tuple[str, int]:
    return host_port(parts)


def probe_for(dep: Dependency) -> Probe:
    from waitfor.urls import urlsplit

    parts = urlsplit(dep.url)
    host, port = host_port(parts)

    def probe(timeout: float) -> str:
        return f"connected to {connect(host, port, timeout)}"

    return probe
