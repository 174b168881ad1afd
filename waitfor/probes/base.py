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
  probe_for(dep) -> Probe
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Protocol
    from urllib.parse import SplitResult

    from waitfor.config.model import Dependency


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
        def OPTIONS(self) -> Mapping[str, Callable[[Any], Any]]: ...
        @property
        def SECRET_OPTIONS(self) -> tuple[str, ...]: ...
        @property
        def PORT(self) -> int | str | None: ...
        @property
        def EXTRA(self) -> str | None: ...
        @property
        def DRIVER(self) -> str | None: ...

        def check_url(self, parts: SplitResult) -> None: ...
        def probe_for(self, dep: Dependency) -> Probe: ...
        def cancel(self) -> None: ...


def accept_url(parts: SplitResult) -> None:
    """check_url for kinds whose URL needs no check beyond host and port."""


def no_cancel() -> None:
    """cancel for kinds that leave nothing running when an attempt is abandoned."""


def describe(exc: BaseException) -> str:
    """A one-line reason from any exception, for logs and timeout reports."""
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    return " ".join(text.split())
