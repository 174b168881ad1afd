"""dns://name: ready when the name resolves (to any address)."""

from __future__ import annotations

from waitfor.probes.base import accept_url, no_cancel, no_target
from waitfor.probes.connect import resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe

PORT = 0  # no port is needed; one given is ignored
READY_ON_CONNECT = False
STILL_THERE = "still reachable"  # what `invert: true` says while it answers
connect_target = no_target
check_url = accept_url
cancel = no_cancel
SECRET_OPTIONS: tuple[str, ...] = ()
EXTRA = None  # no driver: nothing to install
DRIVER = None
OPTIONS: Options = {}


def probe_for(dep: Dependency) -> Probe:
    from waitfor.urls import urlsplit

    host = urlsplit(dep.url).hostname or ""  # config checked it names one

    def probe(timeout: float) -> str:
        infos = resolve(host, None, timeout)  # bounded: getaddrinfo has no timeout of its own
        return "resolves to " + ", ".join(sorted({i[4][0] for i in infos}))

    return probe
