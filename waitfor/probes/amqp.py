"""amqp:// and amqps://user:pass@host:port/vhost: ready when pika can open a connection
and a channel on the virtual host (the URL path, URL-decoded: `/%2F` and no path both mean
"/", `/orders` means "orders"), as an application would.

RabbitMQ accepts TCP connections well before it can serve a vhost (while its boot steps
run it closes AMQP handshakes), and answers with its own reasons, which are shown:
"ACCESS_REFUSED - Login was refused ...", "NOT_ALLOWED - vhost x not found".
`password_file:` reads the password from a Docker/Kubernetes secret file.
pika's own URL query options (heartbeat, ssl_options, ...) work as documented by pika.
One connection per attempt: the scheduler's own connects answer while nothing listens
(connect_target); then each attempt is pika's alone, and a refused one is `Refused`.
"""

from __future__ import annotations

from waitfor.config import validators as v
from waitfor.probes.base import NotReady, accept_url, close_quietly, host_port, no_cancel, password_of, tcp_target
from waitfor.probes.connect import refusal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

PORT = 5672  # or 5671 for amqps
READY_ON_CONNECT = False
STILL_THERE = "still reachable"  # what `invert: true` says while it answers
check_url = accept_url
cancel = no_cancel
OPTIONS: Options = {
    "password_file": v.readable_file,
}
SECRET_OPTIONS = ()  # the password file's content is added to the secrets by config.py
DRIVER = "pika"
EXTRA = "amqp"


def connect_target(parts: SplitResult) -> tuple[str, int] | None:
    return tcp_target(parts, 5671 if parts.scheme.lower() == "amqps" else PORT)


def probe_for(dep: Dependency) -> Probe:
    import pika
    import pika.exceptions
    from pika.adapters.utils import connection_workflow as workflow

    from waitfor.urls import unquote, urlsplit, urlunsplit

    parts = urlsplit(dep.url)
    host, port = host_port(parts, 5671 if parts.scheme.lower() == "amqps" else PORT)
    # pika reads user and password from the URL only together (a user without a password
    # makes it fail), so credentials are taken out of the URL and set here.
    hostport = parts.netloc.rpartition("@")[2]
    params = pika.URLParameters(urlunsplit((parts.scheme, hostport, parts.path, parts.query, "")))
    password = password_of(dep, parts)
    if parts.username is not None or password is not None:
        # RabbitMQ's default user is guest (as pika's default credentials are guest:guest)
        user = unquote(parts.username) if parts.username else "guest"
        params.credentials = pika.PlainCredentials(user, password or "")
    # One attempt is one try: the engine retries (pika would otherwise retry by itself).
    params.connection_attempts = 1

    def probe(timeout: float) -> str:
        left = max(timeout, 0.05)
        # stack_timeout bounds TCP + TLS + the AMQP handshake together, socket_timeout each
        # socket operation: a port that accepts but never speaks AMQP fails within `left`.
        params.socket_timeout = left
        params.stack_timeout = left
        params.blocked_connection_timeout = left
        try:
            conn = pika.BlockingConnection(params)
        except workflow.AMQPConnectorStackTimeout:
            # its text names the socket tuple; say what happened instead
            raise NotReady(f"timed out after {left:.3g}s during the AMQP handshake") from None
        except (pika.exceptions.AMQPError, workflow.AMQPConnectorException) as e:
            raise refusal(e, host, port) or NotReady(_reason(e)) from None
        try:
            conn.channel()
            addr = _peer(conn, host)
            return f"connected to {addr}, channel open on vhost {params.virtual_host!r}"
        except pika.exceptions.AMQPError as e:
            raise NotReady(_reason(e)) from None
        finally:
            close_quietly(conn, pika.exceptions.AMQPError)

    return probe


def _peer(conn: object, host: str) -> str:
    """The address that accepted (pika's blocking connection keeps its socket inside)."""
    try:
        return str(conn._impl._transport._sock.getpeername()[0])  # type: ignore[attr-defined]
    except (AttributeError, OSError, IndexError, TypeError):
        return host


def _reason(e: BaseException) -> str:
    """pika nests the broker's reply: find its (code, 'TEXT - ...') or the innermost cause."""
    import pika.exceptions

    seen = set()
    while id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (pika.exceptions.ConnectionClosed, pika.exceptions.ChannelClosed)):
            if e.reply_text:
                return f"{e.reply_text} ({e.reply_code})"
        inner = [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        if isinstance(e, pika.exceptions.AMQPConnectionError) and inner:
            e = inner[0]
            continue
        break
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
