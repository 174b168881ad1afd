"""file:///path: ready when the path exists (with `invert: true`, when it does not)."""

import os

from waitfor.probes.base import Refused, no_cancel

PORT = None
cancel = no_cancel
SECRET_OPTIONS: tuple[str, ...] = ()
EXTRA = None  # no driver: nothing to install
DRIVER = None
OPTIONS = {}


def check_url(parts):
    if parts.netloc not in ("", "localhost"):
        raise ValueError("a file URL has no host: write file:///absolute/path")
    if not parts.path:
        raise ValueError("no path")


def probe_for(dep):
    from urllib.parse import unquote, urlsplit

    path = unquote(urlsplit(dep.url).path)

    def probe(timeout: float):
        if not os.path.exists(path):
            raise Refused(f"{path} does not exist")
        return "exists"

    return probe
