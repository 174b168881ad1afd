"""file:///path: ready when the path exists (with `invert: true`, when it does not)."""

from __future__ import annotations

import os

from waitfor.probes.base import Refused, no_cancel, no_target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

PORT = None
READY_ON_CONNECT = False
STILL_THERE = "still exists"  # what `invert: true` says while the path is there
connect_target = no_target
cancel = no_cancel
SECRET_OPTIONS: tuple[str, ...] = ()
EXTRA = None  # no driver: nothing to install
DRIVER = None
OPTIONS: Options = {}


def check_url(parts: SplitResult) -> None:
    if parts.netloc not in ("", "localhost"):
        raise ValueError("a file URL has no host: write file:///absolute/path")
    if not parts.path:
        raise ValueError("no path")


def probe_for(dep: Dependency) -> Probe:
    from waitfor.urls import unquote, urlsplit

    path = unquote(urlsplit(dep.url).path)

    def probe(timeout: float) -> str:
        if not os.path.exists(path):
            raise Refused(f"{path} does not exist")
        return "exists"

    return probe
