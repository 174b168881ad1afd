"""http:// and https://: ready when a GET answers with an accepted status (2xx by default)
and, with `body:`, the body matches a regular expression. Redirects are not followed:
a health endpoint that redirects is usually misconfigured, and `status: [200, 301]`
accepts one on purpose. A refused connection is `Refused`, so a closed port is polled fast.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl

from waitfor.config import validators as v
from waitfor.probes.base import NotReady, accept_url, tcp_target, tls_context
from waitfor.probes.deadline import Deadline

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.urls import SplitResult

PORT = 80  # or 443 for https
READY_ON_CONNECT = False
STILL_THERE = "still reachable"  # what `invert: true` says while it answers
check_url = accept_url


def connect_target(parts: SplitResult) -> tuple[str, int] | None:
    return tcp_target(parts, 443 if parts.scheme.lower() == "https" else PORT)

EXTRA = None  # no driver: nothing to install
DRIVER = None


@v.validator(v.readable_file.schema, reads_file=True)
def ca_bundle(value: object) -> str:
    """A readable PEM file of CA certificates: checked when the config is read (exit 2),
    not on the first attempt."""
    path = v.readable_file(value)
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as e:
        raise ValueError(f"{path} is not a PEM file of CA certificates ({e.reason or e})") from None
    return path


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods, header names


@v.validator(v.string.schema)
def method(value: object) -> str:
    m = v.string(value).strip().upper()
    if not _TOKEN.fullmatch(m):
        raise ValueError(f"bad HTTP method {m!r}")
    return m



@v.validator(v.string_map.schema)
def headers(value: object) -> dict[str, str]:
    out = v.string_map(value)
    for name, val in out.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"bad header name {name!r}")
        if "\r" in val or "\n" in val:
            raise ValueError(f"the value of header {name} holds a line break")
    return out


OPTIONS: Options = {
    "status": v.http_status,
    "body": v.regex,
    "headers": headers,
    "method": method,
    "insecure": v.boolean,
    "ca_file": ca_bundle,
}
SECRET_OPTIONS = ("headers",)  # Authorization, Cookie, API keys: all header values are masked
# `body:` is matched against the first MAX_BODY bytes only: a health endpoint answers in
# a few hundred bytes, and the bound keeps both the read and the match small.
MAX_BODY = 64 << 10
_OK = frozenset(range(200, 300))

if TYPE_CHECKING:
    from collections.abc import Callable

    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

    Matcher = Callable[[str, Deadline], bool]


def matcher(pattern: str) -> Matcher:
    """search(text, deadline) -> bool for `body:`, that cannot run past the attempt.

    Python's `re` backtracks: `(a*)*b` against 30 a's runs for minutes, holding the GIL
    (so even SIGTERM waits) and a pool thread. With google-re2 installed (the `re2` extra)
    the match runs in linear time, so it is bounded by the body's size. A pattern that RE2
    does not support (backreferences, lookaround), or no RE2, is matched in a forked child
    that is killed at the attempt's deadline.
    """
    try:
        import re2
    except ImportError:
        return lambda text, d: _search_in_child(pattern, text, d)
    options = re2.Options()
    options.log_errors = False  # an unsupported pattern is not worth a line on stderr
    try:
        compiled = re2.compile(pattern, options)
    except re2.error:  # backreferences, lookaround: RE2 does not do them
        return lambda text, d: _search_in_child(pattern, text, d)
    return lambda text, d: compiled.search(text) is not None


_children: set[int] = set()


def cancel() -> None:
    """The wait is over: kill any `body:` match still running in a child."""
    for pid in list(_children):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _search_in_child(pattern: str, text: str, d: Deadline) -> bool:
    import select
    import warnings

    r, w = os.pipe()
    try:
        with warnings.catch_warnings():  # 3.12+: "use of fork() may lead to deadlocks"
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as e:
        os.close(r)
        os.close(w)
        raise NotReady(f"cannot match body: in a child process: {e.strerror}") from None
    if pid == 0:  # the child: no locks taken, no Python-level I/O, only the match
        try:
            import resource

            cpu = int(d.left()) + 2  # in case the parent dies: the kernel kills it (SIGKILL)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
            found = re.search(pattern, text) is not None
            os.write(w, b"1" if found else b"0")
        finally:
            os._exit(0)
    _children.add(pid)
    os.close(w)
    data = b""
    try:
        poller = select.poll()
        poller.register(r, select.POLLIN)
        if poller.poll(d.left(0.0) * 1000):
            data = os.read(r, 1)
    finally:
        os.close(r)
        if not data:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # reaped by a supervisor's waitpid(-1)
            pass
        _children.discard(pid)
    if not data:
        raise NotReady(f"matching body: {pattern!r} did not finish within the attempt "
                       f"(a regex that backtracks; with the re2 extra, from a checkout pip install '.[re2]', it is matched in linear time)")
    return data == b"1"


def _headers(parts: SplitResult, given: dict[str, str]) -> dict[str, str]:
    """The request's headers: waitfor's, then `headers:`, then Basic auth from the URL's
    `user:pass@` unless `headers:` has its own Authorization."""
    headers = {"User-Agent": "waitfor", "Connection": "close", **given}
    if parts.username is not None:
        import base64

        from waitfor.urls import unquote

        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers.setdefault("Authorization", "Basic " + base64.b64encode(cred).decode())
    return headers


def probe_for(dep: Dependency) -> Probe:
    import http.client

    from waitfor.urls import urlsplit

    parts = urlsplit(dep.url)
    opts = dep.options
    accepted = opts.get("status", _OK)
    body_re = opts.get("body")
    pattern = body_re.pattern if body_re is not None else None
    search = matcher(pattern) if pattern is not None else None
    method = opts.get("method", "GET").upper()
    headers = _headers(parts, opts.get("headers", {}))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host, port = parts.hostname or "", parts.port  # config checked the host
    context = None
    if parts.scheme == "https":
        context = tls_context(opts)

    def probe(timeout: float) -> str:
        from waitfor.probes.connect import open_connection

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
            if search is not None and not search(body.decode("utf-8", errors="replace"), d):
                raise NotReady(f"HTTP {resp.status}, but the body does not match {pattern!r}")
            return f"HTTP {resp.status}"

    return probe
