"""tcp://host:port (or bare host:port): ready when a TCP connection is accepted.

Every address the name resolves to is tried in turn, as wait-for-it does not (it tries
only what `nc`/bash's /dev/tcp picks). Also the cheap first step of every driver probe.
"""

import socket
import time

from waitfor.probes.base import NotReady, Refused

PORT = "required"
OPTIONS = {}


def connect(host: str, port: int, timeout: float) -> str:
    """Connect to any address of host:port and close again. Return the address that accepted.

    Raises Refused when nothing listens (or the name does not resolve yet, as in compose
    before the other container exists), NotReady for slower failures such as time-outs.
    """
    deadline = time.monotonic() + timeout
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise Refused(f"cannot resolve {host}: {e.strerror}") from None
    last = None
    for family, stype, proto, _, addr in infos:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, stype, proto)
        try:
            sock.settimeout(remaining)
            sock.connect(addr)
            return addr[0]
        except ConnectionRefusedError:
            last = Refused(f"connection refused ({_fmt(addr)})")
        except socket.timeout:
            last = NotReady(f"connect timed out ({_fmt(addr)})")
        except OSError as e:
            last = NotReady(f"{e.strerror or e} ({_fmt(addr)})")
        finally:
            sock.close()
    raise last or NotReady(f"connect timed out ({host}:{port})")


def _fmt(addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def probe_for(dep):
    from urllib.parse import urlsplit

    parts = urlsplit(dep.url)
    host, port = parts.hostname, parts.port

    def probe(timeout: float):
        return f"connected to {connect(host, port, timeout)}"

    return probe
