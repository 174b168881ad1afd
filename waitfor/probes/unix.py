"""unix:///path/to.sock: ready when the Unix stream socket accepts a connection."""

from __future__ import annotations

import socket

from waitfor.probes.base import NotReady, no_cancel
from waitfor.probes.connect import connect_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

PORT = None
READY_ON_CONNECT = True  # probed by the scheduler's own connects (waitfor.wait.connect)
STILL_THERE = "still reachable"  # what `invert: true` says while it answers
cancel = no_cancel
SECRET_OPTIONS: tuple[str, ...] = ()
EXTRA = None  # no driver: nothing to install
DRIVER = None
OPTIONS: Options = {}


def check_url(parts: SplitResult) -> None:
    if not parts.path:
        raise ValueError("no socket path (write unix:///run/app.sock)")


def connect_target(parts: SplitResult) -> str:
    from waitfor.urls import unquote

    return unquote(parts.path)


def probe_for(dep: Dependency) -> Probe:
    from waitfor.urls import unquote, urlsplit

    path = unquote(urlsplit(dep.url).path)

    def probe(timeout: float) -> str:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except socket.timeout:
            raise NotReady(f"{path}: connect timed out") from None
        except OSError as e:
            raise connect_error(e.errno, path) if e.errno else NotReady(f"{path}: {e}") from None
        finally:
            sock.close()
        return "accepted"

    return probe
