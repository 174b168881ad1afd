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
  STILL_THERE: what `invert: true` says while the dependency is still there ("still
        reachable"; the file kind: "still exists")
  connect_target(parts) -> (host, port), a unix socket's path, or None: where an attempt
        connects first, when the URL says so plainly (None when in doubt: several hosts,
        a socket path in the query). While nothing listens there, the scheduler's own
        non-blocking connects answer `Refused` without a pool thread or a driver; once it
        accepts, the kind's probe runs with one connection of its own per attempt (no TCP
        connect of its own before the driver's; a refused one is `Refused`: connect.refusal).
  probe_for(dep) -> Probe

This module is the interface only, with the small helpers every kind shares. The
machinery lives beside it: `connect` (host:port, a name's addresses raced), `deadline`
(one deadline per attempt, with its watchdog), `limits` (waitfor's own resource limits,
reported as such and retried) and `event_loop` (the asyncio drivers' per-thread loop).

How an attempt is bounded (one rule, every kind):
  `probe(timeout)` must be over within `timeout` seconds, with nothing it started left
  running. It takes its deadline once, `time.monotonic() + timeout`, and every blocking
  step gets what is left of it, by the first means that reaches the step: waitfor's own
  wait (poll, a child's pipe) until the deadline; a `deadline.Deadline` over every socket
  the attempt can get hold of (shut down at the deadline, waking the reader); else the
  driver's own bound on the whole operation, set to what is left minus
  `deadline.DRIVER_MARGIN` (so a silent server is reported in the driver's words), or
  `asyncio.wait_for` for an asyncio driver. A per-read socket timeout alone is never the
  bound: a server that drips its answer a byte at a time keeps every read within it.
  A result that still comes late is dropped by the engine (the attempt's token), so a
  driver that overstays costs a pool thread, never a late verdict. Per kind
  (tests/test_architecture.py checks that each kind is listed):
    tcp       connect.race polls until the deadline (the scheduler: its own timer)
    unix      one connect() under a socket timeout of the attempt's
    http      a Deadline over its socket, connect to the last byte of the body; `body:`
              in a child killed at the deadline (or RE2, linear)
    mysql     a Deadline over the socket handed to PyMySQL
    redis     a Deadline over redis-py's socket
    postgres  asyncio.wait_for on event_loop.run_async's loop
    nats      asyncio.wait_for on event_loop.run_async's loop
    amqp      pika's stack_timeout
    mqtt      the CONNACK deadline of its own loop
    grpc      the call's deadline
    command   its process group killed at the deadline
    dns       connect.resolve: the lookup thread is waited for until the deadline
    file      one stat(): nothing to bound
  The driver kinds make no TCP connect of their own first: the scheduler's connects answer
  while the port is refused (connect_target), and the driver's own connect is the attempt's one.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Mapping
    from typing import Any, Protocol

    from waitfor.config.model import Dependency
    from waitfor.urls import SplitResult

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
        @property
        def STILL_THERE(self) -> str: ...

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


def accept_url(parts: SplitResult) -> None:
    """check_url for kinds whose URL needs no check beyond host and port."""


def no_cancel() -> None:
    """cancel for kinds that leave nothing running when an attempt is abandoned."""


def describe(exc: BaseException) -> str:
    """A one-line reason from any exception, for logs and timeout reports."""
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    return " ".join(text.split())


def close_quietly(thing: Any, *errors: type[BaseException]) -> None:
    """thing.close(), ignoring `errors` (OSError if none): closing must not mask the
    attempt's reason."""
    caught: tuple[type[BaseException], ...] = errors or (OSError,)
    try:
        thing.close()
    except caught:
        pass
