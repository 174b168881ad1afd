"""redis:// and rediss://[user:pass@]host:port[/db]: ready when the server answers PING,
authenticated with the URL's credentials (or `password_file:`), and, with `key:`, when that
key exists (for example a flag a seeding job sets when it is done).

redis-py answers the server's own errors: "NOAUTH Authentication required",
"WRONGPASS invalid username-password pair", "LOADING Redis is loading the dataset in
memory" (Redis accepts connections while it loads its RDB/AOF and refuses commands).
One connection per attempt: the scheduler's own connects answer while nothing listens
(connect_target); then each attempt is redis-py's alone, and a refused one is `Refused`.
"""

from __future__ import annotations

import threading

from waitfor.config import validators as v
from waitfor.probes.base import (
    Broken,
    NotReady,
    accept_url,
    close_quietly,
    host_port,
    no_cancel,
    password_of,
    tcp_target,
)
from waitfor.probes.connect import refusal
from waitfor.probes.deadline import DRIVER_MARGIN, Deadline, with_deadline

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

PORT = 6379
READY_ON_CONNECT = False
STILL_THERE = "still reachable"  # what `invert: true` says while it answers
check_url = accept_url
cancel = no_cancel
OPTIONS: Options = {
    "key": v.string,
    "password_file": v.readable_file,
}
SECRET_OPTIONS = ()  # the password file's content is added to the secrets by config.py
DRIVER = "redis"
MAX_REASON = 160
EXTRA = "redis"


def connect_target(parts: SplitResult) -> tuple[str, int] | None:
    return None if "socket" in parts.query.lower() else tcp_target(parts, PORT)


def probe_for(dep: Dependency) -> Probe:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from waitfor.urls import urlsplit

    parts = urlsplit(dep.url)
    host, port = host_port(parts, PORT)
    key = dep.options.get("key")
    password = password_of(dep, parts)
    extra = {} if password is None else {"password": password}

    local = threading.local()
    guarded = _guarded_connection(parts.scheme, local)
    _check_options(dep.url, guarded)

    def attempt(timeout: float, d: Deadline) -> str:
        left = max(timeout - DRIVER_MARGIN, 0.05)
        client = None
        try:
            # redis-py retries a failed command three times by default (redis-py >= 6);
            # waitfor's engine does the retrying, so one attempt is exactly one try.
            # RESP2 unless the URL asks for ?protocol=3: Redis before 6 has no HELLO.
            client = redis.Redis.from_url(
                dep.url, socket_connect_timeout=left, socket_timeout=left, protocol=2,
                retry=Retry(NoBackoff(), 0), single_connection_client=True,
                connection_class=guarded, **extra,
            )
            client.ping()
            addr = _peer(client, host)
            if key is not None:
                if not client.exists(key):
                    raise NotReady(f"key {key!r} does not exist")
                return f"connected to {addr}, PONG, key {key!r} exists"
            return f"connected to {addr}, PONG"
        except redis.RedisError as e:
            raise refusal(e, host, port) or NotReady(_reason(e)) from None
        except ValueError as e:  # redis-py's word for an option it cannot use: permanent
            raise Broken(_reason(e)) from None
        finally:
            if client is not None:
                close_quietly(client, redis.RedisError)

    def arm(d: Deadline) -> None:
        local.deadline = d

    return with_deadline(attempt, arm)


def _guarded_connection(scheme: str, local: threading.local) -> type[Any]:
    """redis-py's connection class with the attempt's deadline (`local.deadline`) guarding
    its socket from the TLS handshake on (its socket_timeout is per read: a server dripping
    its replies would hold the attempt)."""
    import redis

    if scheme == "rediss":

        class Guarded(redis.SSLConnection):
            def _wrap_socket_with_ssl(self, sock: socket.socket) -> socket.socket:
                return super()._wrap_socket_with_ssl(local.deadline.guard(sock))

        return Guarded

    class GuardedPlain(redis.Connection):
        def _connect(self) -> socket.socket:
            return local.deadline.guard(super()._connect())

    return GuardedPlain


def _check_options(url: str, guarded: type[Any]) -> None:
    """redis-py's own URL parser and connection class, without connecting: a bad option
    (?protocol=9, ?socket_timeout=abc, ?ssl_cert_reqs=bogus) is exit 2 now, not an
    attempt that fails the same way until the timeout (issue 10 E15)."""
    import redis

    try:
        redis.ConnectionPool.from_url(url, protocol=2, connection_class=guarded).make_connection()
    except (ValueError, redis.RedisError) as e:
        raise ValueError(_reason(e)) from None


def _peer(client: Any, host: str) -> str:
    """The address that accepted (a name may resolve to several)."""
    try:
        return str(client.connection._sock.getpeername()[0])
    except (AttributeError, OSError, IndexError, TypeError):
        return host


def _reason(e: BaseException) -> str:
    import redis

    text = " ".join(str(e).split()) or type(e).__name__
    if len(text) > MAX_REASON:  # a non-Redis server's greeting, echoed by "Protocol Error"
        text = text[:MAX_REASON] + "..."
    # redis-py strips the error code from NOAUTH/WRONGPASS replies; say which it was.
    if isinstance(e, redis.AuthenticationError) and not text.startswith(("NOAUTH", "WRONGPASS")):
        if "Authentication required" in text:
            text = f"NOAUTH {text} (no password given)"
        elif "invalid username-password pair" in text:
            text = f"WRONGPASS {text}"
        else:
            text = f"authentication failed: {text}"
    elif isinstance(e, redis.BusyLoadingError):
        text = f"LOADING {text}"
    elif isinstance(e, redis.TimeoutError):
        text = f"timed out: {text}"
    return text
