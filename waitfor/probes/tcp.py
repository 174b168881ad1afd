"""tcp://host:port (or bare host:port): ready when a TCP connection is accepted, on any of
the addresses the name resolves to (raced: waitfor.probes.connect). The scheduler makes
these connects itself, without a thread (waitfor.wait.engine); this probe is its
counterpart for the attempts it does not make (an inverted tcp dependency, for one).
"""

from __future__ import annotations

from waitfor.probes.base import accept_url, host_port, no_cancel
from waitfor.probes.connect import connect

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

PORT = "required"
READY_ON_CONNECT = True  # probed by the scheduler's own connects (waitfor.wait.connect)
STILL_THERE = "still reachable"  # what `invert: true` says while it answers
check_url = accept_url
cancel = no_cancel
SECRET_OPTIONS: tuple[str, ...] = ()
EXTRA = None  # no driver: nothing to install
DRIVER = None
OPTIONS: Options = {}


def connect_target(parts: SplitResult) -> tuple[str, int]:
    return host_port(parts)


def probe_for(dep: Dependency) -> Probe:
    from waitfor.urls import urlsplit

    parts = urlsplit(dep.url)
    host, port = host_port(parts)

    def probe(timeout: float) -> str:
        return f"connected to {connect(host, port, timeout)}"

    return probe
