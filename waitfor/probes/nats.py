"""nats://[user:pass@ | token@]host:port: ready when nats-py connects (the server's INFO,
our CONNECT, authenticated) and a flush (PING/PONG) round trip succeeds.

nats-py is asyncio-only; each probe runs in its own worker thread (see waitfor.engine), so
an attempt runs on its pool thread's own event loop (event_loop.run_async). A rejected login shows the
server's "Authorization Violation". `password_file:` reads the password (or, for a URL
without a user, the token) from a Docker/Kubernetes secret file.
One connection per attempt: the scheduler's own connects answer while nothing listens
(connect_target); then each attempt is nats-py's alone, and a refused one is `Refused`.
"""

from __future__ import annotations

import time

from waitfor.config import validators as v
from waitfor.probes.base import NotReady, accept_url, host_port, no_cancel, password_of, tcp_target
from waitfor.probes.connect import refusal
from waitfor.probes.event_loop import run_async

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

PORT = 4222
READY_ON_CONNECT = False
STILL_THERE = "still reachable"  # what `invert: true` says while it answers
check_url = accept_url
cancel = no_cancel
OPTIONS: Options = {
    "password_file": v.readable_file,
}
SECRET_OPTIONS = ()  # the password file's content is added to the secrets by config.py
DRIVER = "nats"
EXTRA = "nats"


def connect_target(parts: SplitResult) -> tuple[str, int] | None:
    return tcp_target(parts, PORT)


def probe_for(dep: Dependency) -> Probe:
    import logging

    import nats  # noqa: F401 - imported here, not at start-up

    from waitfor.urls import urlsplit

    # nats-py logs asynchronous errors at ERROR on the "nats.aio.client" logger; with no
    # handler configured Python's last-resort handler would print them with a traceback
    # to stderr. Each of them reaches us through error_cb and becomes the attempt's reason.
    logging.getLogger("nats").addHandler(logging.NullHandler())

    parts = urlsplit(dep.url)
    host, port = host_port(parts, PORT)
    server, creds = _server_and_creds(dep, parts)

    def probe(timeout: float) -> str:
        left = max(timeout, 0.05)
        try:
            run_async(_attempt(server, creds, host, port, left))
        except NotReady:
            raise
        except Exception as e:  # noqa: BLE001 - nats-py raises asyncio/OSError/its own types
            raise NotReady(_reason(e)) from None
        return f"connected to {host}, flush ok"

    return probe


def _server_and_creds(dep: Dependency, parts: SplitResult) -> tuple[str, dict[str, str]]:
    """The server URL nats-py is given and its credential keywords: a password given apart
    from the URL (password_file) leaves only host and port in the URL."""
    from waitfor.urls import unquote, urlunsplit

    secret = password_of(dep, parts)
    if secret is None:
        return dep.url, {}
    if parts.username:
        creds = {"user": unquote(parts.username), "password": secret}
    else:
        creds = {"token": secret}
    hostport = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment)), creds


async def _attempt(server: str, creds: dict[str, str], host: str, port: int, left: float) -> None:
    """One connect and flush round trip within `left` seconds, the client closed after."""
    import asyncio

    from nats.aio.client import Client

    end = time.monotonic() + left
    client = Client()
    errors: list[Exception] = []
    failed = asyncio.Event()

    async def on_error(e: Exception) -> None:
        errors.append(e)
        failed.set()

    # No reconnecting: the engine retries. nats-py would otherwise keep trying the
    # server (reconnect_time_wait apart) and report only "no servers available".
    # nats-py's annotations say int for its timeouts; it takes seconds as floats.
    options: dict[str, Any] = dict(
        servers=[server], connect_timeout=left, allow_reconnect=False,
        max_reconnect_attempts=1, reconnect_time_wait=left, error_cb=on_error,
        name="waitfor", verbose=False, **creds,
    )
    connecting = asyncio.ensure_future(client.connect(**options))
    failing = asyncio.ensure_future(failed.wait())
    try:
        await asyncio.wait({connecting, failing}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        if connecting.done() and connecting.exception() is None:
            await client.flush(timeout=max(left, 0.05))  # type: ignore[arg-type]
            return
        if errors:
            raise refusal(errors[0], host, port) or NotReady(_reason(errors[0]))
        if connecting.done():
            raise NotReady(_reason(connecting.exception() or TimeoutError()))
        raise NotReady(f"no answer within {left:.3g}s (is this a NATS server?)")
    finally:
        for task in (connecting, failing):
            task.cancel()
        await asyncio.gather(connecting, failing, return_exceptions=True)
        try:
            # within the attempt: a server that drips its answers cannot hold the close
            await asyncio.wait_for(client.close(), max(end - time.monotonic(), 0.05))
        except Exception:  # noqa: BLE001 - closing must not mask the reason of the attempt
            pass


def _reason(e: BaseException) -> str:
    import asyncio

    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    text = " ".join(str(e).split())
    return text or type(e).__name__
