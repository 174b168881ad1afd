"""postgres:// and postgresql://: ready when psycopg 3 can log in and run `SELECT 1`, or,
with `query:`, when that query succeeds and returns at least one row (for example
`SELECT 1 FROM schema_migrations WHERE version = '42'`, to wait for a migration).

The URL is handed to libpq unchanged as the conninfo, so sslmode, application_name,
options and every other libpq keyword go in its query string. `password_file:` reads the
password from a Docker/Kubernetes secret file instead of the URL.

One connection per attempt: while nothing listens, the scheduler's own connects answer
(connect_target); once the port answers, each attempt is psycopg's login alone, and a
refused one is still `Refused`. Every other failure carries PostgreSQL's own reason: "the database system is
starting up" (it accepts connections while it replays WAL), `database "x" does not exist`,
`password authentication failed for user "x"`.
"""

from __future__ import annotations

import re
import time

from waitfor.config import validators as v
from waitfor.probes.base import Broken, NotReady, accept_url, host_port, no_cancel, password_of, tcp_target
from waitfor.probes.connect import refusal
from waitfor.probes.event_loop import run_async

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

PORT = 5432
READY_ON_CONNECT = False
STILL_THERE = "still reachable"  # what `invert: true` says while it answers
check_url = accept_url
cancel = no_cancel
OPTIONS: Options = {
    "query": v.string,
    "password_file": v.readable_file,
}
SECRET_OPTIONS = ()  # the password file's content is added to the secrets by config.py
DRIVER = "psycopg"
EXTRA = "postgres"

# libpq (connectDBComplete) and psycopg (conninfo.timeout_from_conninfo) both raise a
# connect_timeout below 2 seconds to 2, so the attempt's own bound is enforced around the
# connect with asyncio (see probe below); connect_timeout only backs it up.
_MIN_CONNECT_TIMEOUT = 2
# libpq checks these values only when it connects: checked here when the probe is built
# (exit 2), not found out on every attempt until the timeout.
_ENUMS = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "load_balance_hosts": ("disable", "random"),
    "sslnegotiation": ("postgres", "direct"),
}
# libpq's words for a conninfo it rejects: no retry can change them (issue 10 E15)
_PERMANENT = re.compile(r"invalid [\w ]+ value|invalid connection option|invalid URI")


def connect_target(parts: SplitResult) -> tuple[str, int] | None:
    """None when libpq may go elsewhere: hosts or a socket directory in the query string,
    a percent-encoded socket path as the host."""
    query = parts.query.lower()
    if "host" in query or "socket" in query or "%" in parts.netloc.rpartition("@")[2]:
        return None
    return tcp_target(parts, PORT)


def probe_for(dep: Dependency) -> Probe:
    import asyncio

    import psycopg

    from waitfor.urls import urlsplit

    _check_conninfo(dep.url)
    parts = urlsplit(dep.url)
    host, port = host_port(parts, PORT)
    query = dep.options.get("query")
    password = password_of(dep, parts)
    extra = {} if password is None else {"password": password}

    async def check(deadline: float) -> str:
        left = deadline - time.monotonic()
        params: dict[str, Any] = dict(extra, connect_timeout=max(_MIN_CONNECT_TIMEOUT, int(left)))
        conn = await psycopg.AsyncConnection.connect(dep.url, autocommit=True, **params)
        try:
            addr = conn.info.hostaddr or host  # the address that accepted (libpq >= 12)
            if query is None:
                await conn.execute("SELECT 1")
                return f"connected to {addr}, SELECT 1 ok"
            # A migration holds its locks until it commits: bound the query on the server
            # too, a little inside the attempt, so a SELECT blocked by a lock is cancelled
            # there (and says so) rather than left waiting behind a closed client.
            left_ms = max(int((deadline - time.monotonic()) * 800), 100)
            await conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(left_ms),))
            cur = await conn.execute(query)
            if cur.description is None:
                raise NotReady("the query returned no rows (it returns no result set)")
            if await cur.fetchone() is None:
                raise NotReady("the query returned no rows")
            return f"connected to {addr}, the query returned a row"
        finally:
            await conn.close()

    async def within(deadline: float) -> str:
        # check() is made only once the loop runs: a loop that cannot start closes this
        # coroutine, and leaves no never-awaited check() behind.
        return await asyncio.wait_for(check(deadline), max(deadline - time.monotonic(), 0.01))

    def probe(timeout: float) -> str:
        deadline = time.monotonic() + timeout
        try:
            # psycopg's blocking connect cannot wait less than 2 s; its asyncio connect can
            # be cancelled at any point (the half-open libpq connection is then finished).
            # Each pool thread keeps its own event loop for its attempts (event_loop.run_async).
            return run_async(within(deadline))
        except asyncio.TimeoutError:
            raise NotReady(f"no answer within {timeout:.3g}s (is this a PostgreSQL server?)") from None
        except psycopg.Error as e:
            raise _classify(e, host, port) from None

    return probe


def _check_conninfo(url: str) -> None:
    """libpq's own parser, and the values it takes from a closed set: an unknown parameter
    or value is exit 2 now, not an attempt failing the same way until the timeout."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as e:
        raise ValueError(_reason(e)) from None
    for key, allowed in _ENUMS.items():
        if key in params and params[key] not in allowed:
            raise ValueError(f"invalid {key} value {params[key]!r} (one of {', '.join(allowed)})")


def _classify(e: Exception, host: str, port: int) -> Exception:
    """A failed attempt as Refused (nothing listens), Broken (libpq rejects an option or
    the URI: _PERMANENT) or NotReady (anything else, a rejected login included)."""
    refused = refusal(e, host, port)
    if refused is not None:
        return refused
    why = _reason(e)
    if _PERMANENT.search(why):
        return Broken(why)
    return NotReady(why)


def _reason(e: BaseException) -> str:
    """The server's own words, without libpq's "connection to server at ... failed:" prefix."""
    diag = getattr(e, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return primary
    text = " ".join(str(e).split())
    # libpq: 'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  ...'
    for marker in ("FATAL: ", "ERROR: "):
        if marker in text:
            return text.rsplit(marker, 1)[1].strip()
    if text.startswith("connection failed: "):
        text = text[len("connection failed: "):]
    # the address is in the dependency's name already
    text = re.sub(r'^connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed: ', "", text)
    return text or type(e).__name__
