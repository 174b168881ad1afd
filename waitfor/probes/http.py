"""http:// and https://: ready when a GET answers with an accepted status (2xx by default)
and, with `body:`, the body matches a regular expression. Redirects are not followed:
a health endpoint that redirects is usually misconfigured, and `status: [200, 301]`
accepts one on purpose. A refused connection is `Refused`, so a closed port is polled fast.
"""

import re
import socket
import ssl

from waitfor.config import validators as v
from waitfor.probes.base import Deadline, NotReady, accept_url, no_cancel

PORT = 80  # or 443 for https
check_url = accept_url
cancel = no_cancel
EXTRA = None  # no driver: nothing to install
DRIVER = None


def ca_bundle(value) -> str:
    """A readable PEM file of CA certificates: checked when the config is read (exit 2),
    not on the first attempt."""
    path = v.readable_file(value)
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as e:
        raise ValueError(f"{path} is not a PEM file of CA certificates ({e.reason or e})") from None
    return path


ca_bundle.schema = v.readable_file.schema

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods, header names


def method(value) -> str:
    m = v.string(value).strip().upper()
    if not _TOKEN.fullmatch(m):
        raise ValueError(f"bad HTTP method {m!r}")
    return m


method.schema = v.string.schema


def headers(value) -> dict:
    out = v.string_map(value)
    for name, val in out.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"bad header name {name!r}")
        if "\r" in val or "\n" in val:
            raise ValueError(f"the value of header {name} holds a line break")
    return out


headers.schema = v.string_map.schema

OPTIONS = {
    "status": v.http_status,
    "body": v.regex,
    "headers": headers,
    "method": method,
    "insecure": v.boolean,
    "ca_file": ca_bundle,
}
SECRET_OPTIONS = ("headers",)  # Authorization, Cookie, API keys: all header values are masked
MAX_BODY = 1 << 20
_OK = frozenset(range(200, 300))


def probe_for(dep):
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(dep.url)
    opts = dep.options
    accepted = opts.get("status", _OK)
    body_re = opts.get("body")
    method = opts.get("method", "GET").upper()
    headers = {"User-Agent": "waitfor", "Connection": "close", **opts.get("headers", {})}
    if parts.username is not None:
        import base64
        from urllib.parse import unquote

        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers.setdefault("Authorization", "Basic " + base64.b64encode(cred).decode())
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host, port = parts.hostname, parts.port
    context = None
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=opts.get("ca_file"))
        if opts.get("insecure"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE

    def probe(timeout: float) -> str:
        from waitfor.probes.tcp import open_connection

        with Deadline(timeout) as d:

            def create(address: tuple[str, int], *_: object, **__: object) -> socket.socket:
                # For http.client: the name lookup bounded too (getaddrinfo has no timeout
                # of its own), a closed port raising Refused, and the socket guarded by the
                # attempt's deadline from the TLS handshake to the last byte of the body.
                return d.guard(open_connection(address[0], address[1], d.left())[0])

            if context is not None:
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=context)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            conn._create_connection = create  # type: ignore[attr-defined]
            try:
                conn.request(method, path, headers=headers)
                resp = conn.getresponse()
                body = resp.read(MAX_BODY) if body_re is not None else b""
            except (OSError, http.client.HTTPException) as e:
                if isinstance(e, socket.timeout):
                    raise NotReady("timed out") from None
                if isinstance(e, ssl.SSLError):
                    raise NotReady(d.reason(f"TLS: {e.reason or e}")) from None
                raise NotReady(d.reason(f"{type(e).__name__}: {e}")) from None
            finally:
                conn.close()
        if resp.status not in accepted:
            raise NotReady(f"HTTP {resp.status} {resp.reason}")
        if body_re is not None and not body_re.search(body.decode("utf-8", errors="replace")):
            raise NotReady(f"HTTP {resp.status}, but the body does not match {body_re.pattern!r}")
        return f"HTTP {resp.status}"

    return probe
