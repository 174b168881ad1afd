"""dns://name: ready when the name resolves (to any address)."""

import socket

from waitfor.probes.base import Refused

PORT = 0  # no port is needed; one given is ignored
OPTIONS = {}


def probe_for(dep):
    from urllib.parse import urlsplit

    host = urlsplit(dep.url).hostname

    def probe(timeout: float):
        # getaddrinfo has no timeout of its own; the engine bounds the attempt.
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise Refused(f"cannot resolve {host}: {e.strerror}") from None
        return "resolves to " + ", ".join(sorted({i[4][0] for i in infos}))

    return probe
