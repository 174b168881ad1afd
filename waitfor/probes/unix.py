"""unix:///path/to.sock: ready when the Unix stream socket accepts a connection."""

import errno
import socket

from waitfor.probes.base import NotReady, Refused, no_cancel

PORT = None
cancel = no_cancel
SECRET_OPTIONS: tuple[str, ...] = ()
EXTRA = None  # no driver: nothing to install
DRIVER = None
OPTIONS = {}


def check_url(parts):
    if not parts.path:
        raise ValueError("no socket path (write unix:///run/app.sock)")


def probe_for(dep):
    from urllib.parse import unquote, urlsplit

    path = unquote(urlsplit(dep.url).path)

    def probe(timeout: float):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise Refused(f"{path}: {e.strerror}") from None
        except socket.timeout:
            raise NotReady(f"{path}: connect timed out") from None
        except OSError as e:
            if e.errno == errno.EAGAIN:  # listen backlog full: it is there, but busy
                raise NotReady(f"{path}: backlog full") from None
            raise NotReady(f"{path}: {e.strerror}") from None
        finally:
            sock.close()
        return "accepted"

    return probe
