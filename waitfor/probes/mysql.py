"""mysql:// and mariadb://user:pass@host:port/database: ready when PyMySQL can log in and
the server answers a ping (COM_PING), or, with `query:`, when that query succeeds and
returns at least one row (for example to wait for a table a migration creates).

`password_file:` reads the password from a Docker/Kubernetes secret file instead of the
URL. The URL takes no query string: PyMySQL has no URL syntax for its options, and a
silently ignored `?ssl-mode=...` would be worse than an error.

The TCP connect comes first and a refused one is `Refused` (polled at the fast interval),
as in waitfor.probes.tcp, but here the connected socket is handed on to PyMySQL instead
of being closed: MySQL and MariaDB count a connection that closes before the handshake as
a connection error of the client's host, and after max_connect_errors (default 100) of
them without a successful login in between they block the host ("Host ... is blocked
because of many connection errors") until FLUSH HOSTS, which would also lock out the app
itself. That socket is the attempt's one connection (the scheduler's own connects answer
only while nothing listens: connect_target). Once connected, every failure carries the server's own reason, such as
"Access denied for user 'app'@'10.0.0.5' (using password: YES)" or "Unknown database 'app'".
"""

from __future__ import annotations

import socket
import time

from waitfor.config import validators as v
from waitfor.probes.base import NotReady, close_quietly, host_port, no_cancel, password_of, tcp_target
from waitfor.probes.connect import open_connection
from waitfor.probes.deadline import DRIVER_MARGIN, Deadline, with_deadline

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

PORT = 3306
READY_ON_CONNECT = False
STILL_THERE = "still reachable"  # what `invert: true` says while it answers
cancel = no_cancel
OPTIONS: Options = {
    "query": v.string,
    "password_file": v.readable_file,
}
SECRET_OPTIONS = ()  # the password file's content is added to the secrets by config.py
DRIVER = "pymysql"
EXTRA = "mysql"


def check_url(parts: SplitResult) -> None:
    if parts.query:
        raise ValueError("mysql URLs take no query string (PyMySQL has no URL options)")


def connect_target(parts: SplitResult) -> tuple[str, int] | None:
    return tcp_target(parts, PORT)


def probe_for(dep: Dependency) -> Probe:
    import pymysql

    from waitfor.urls import unquote, urlsplit

    parts = urlsplit(dep.url)
    host, port = host_port(parts, PORT)
    user = unquote(parts.username) if parts.username else None
    password = password_of(dep, parts) or ""
    database = unquote(parts.path.lstrip("/")) or None
    query = dep.options.get("query")

    def attempt(timeout: float, d: Deadline) -> str:
        deadline = time.monotonic() + timeout
        sock, addr = open_connection(host, port, timeout)
        d.guard(sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        left = max(deadline - time.monotonic() - DRIVER_MARGIN, 0.05)
        try:
            # read_timeout bounds the handshake too: PyMySQL reads the server greeting
            # with it, so a port that accepts but never greets fails within the attempt.
            conn = pymysql.connect(
                host=addr, port=port, user=user, password=password, database=database,
                connect_timeout=left, read_timeout=left, write_timeout=left, defer_connect=True,
            )
            conn.connect(sock)
        except pymysql.MySQLError as e:
            sock.close()
            raise NotReady(_reason(e)) from None
        try:
            if query is None:
                conn.ping(reconnect=False)
                return f"connected to {addr}, ping ok"
            with conn.cursor() as cur:
                cur.execute(query)
                if cur.fetchone() is None:
                    raise NotReady("the query returned no rows")
            return f"connected to {addr}, the query returned a row"
        except pymysql.MySQLError as e:
            raise NotReady(_reason(e)) from None
        finally:
            close_quietly(conn, pymysql.MySQLError)

    # Every read and write of the attempt (greeting, TLS, login, the query) under one
    # deadline: PyMySQL's read_timeout is per read, and a server dripping its greeting
    # one byte at a time would hold the attempt (and a pool thread) for minutes.
    return with_deadline(attempt)


def _reason(e: BaseException) -> str:
    """PyMySQL errors are (errno, message); show "message (errno)"."""
    args: tuple[object, ...] = getattr(e, "args", ())
    if len(args) == 2 and isinstance(args[0], int):
        return f"{' '.join(str(args[1]).split())} (error {args[0]})"
    return " ".join(str(e).split()) or type(e).__name__
