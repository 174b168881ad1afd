"""Every line waitfor writes goes through here: logs and errors to stderr, text or JSON,
and the few results written to stdout (help, validate, schema).

Logs go to stderr only: stdout belongs to the app. Lines are written with one write(2)
each, under a lock, so lines from threads never interleave; a closed or full stderr never
stops waitfor (an init must not die of its log). Control characters in a message are
escaped, so that a newline in a YAML key or a file name cannot forge a second log line.
JSON lines carry an RFC 3339 time in UTC with milliseconds, as log shippers expect.

Imported by the lean supervisor too: os, time and _thread only (json when asked for).
The logging module is not used: importing it costs ~4 ms of start-up, and waitfor needs a
few levels only.
"""

from __future__ import annotations

import _thread  # not threading: `waitfor -- app` logs too, and needs no threads
import os
import time

from waitfor import exitcodes
from waitfor.errors import WaitforError

QUIET, NORMAL, VERBOSE = -1, 0, 1
_LEVELS = {"debug": VERBOSE, "info": NORMAL, "warning": QUIET, "error": QUIET - 1}
# C0 controls and DEL, as \n, \t or \xNN; Python keeps a surrogate of undecodable bytes
# in argv and file names, which is written as \udcNN (backslashreplace).
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(32), 127)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def clean(text: str) -> str:
    """One printable line, whatever the message holds."""
    return text.translate(_ESCAPES).encode("utf-8", "backslashreplace").decode("utf-8")


def timestamp(now: float | None = None) -> str:
    """RFC 3339, UTC, milliseconds: 2026-12-02T18:31:02.123Z."""
    now = time.time() if now is None else now
    ms = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{ms:03d}Z"


# The one mask (issue 16 B4): every secret value waitfor knows (secrets_env values, URL
# passwords, header values, password files), registered where it is read, and replaced by
# *** in every text that leaves waitfor: log lines and errors (format_line), stdout
# (write_stdout: health, check, validate), the state file (supervise.state) and the probe
# endpoint's bodies (supervise.probe_server). Longest first, so a secret that contains
# another is masked whole.
MASK = "***"
MIN_SECRET = 3  # shorter ones would wreck every message (as waitfor.secrets.redact)
_MASKED: list[str] = []


def forms(value: str) -> set[str]:
    """The value as written and as output handling may render it (issue 16 B5): without
    surrounding whitespace (a file ending in CRLF keeps a `\\r` that splitlines() and
    strip() drop), each line of a multi-line value (a command probe reports one line),
    and escaped as clean() and JSON write it."""
    found = {value, value.strip()}
    lines = value.splitlines()
    if len(lines) > 1:
        found.update(line.strip() for line in lines)
    for form in list(found):
        found.add(clean(form))
        if any(c in form for c in '"\\') or not (form.isascii() and form.isprintable()):
            import json

            found.add(json.dumps(form)[1:-1])
    return {f for f in found if len(f) >= MIN_SECRET}


def mask(values: object) -> None:
    """Mask these strings (and their rendered forms) in every text that leaves waitfor from
    now on. Inline here, not in waitfor.secrets: the lean supervisor imports this module."""
    known = set(_MASKED)
    for v in values:  # type: ignore[attr-defined]
        if isinstance(v, str) and v:
            known.update(forms(v))
    _MASKED[:] = sorted(known, key=len, reverse=True)


def masked(text: str, extra: object = ()) -> str:
    """`text` with every registered secret, and each of `extra` (a dependency's own), masked."""
    secrets = _MASKED
    if extra:
        more = [s for s in extra if isinstance(s, str) and len(s) >= MIN_SECRET]  # type: ignore[attr-defined]
        if more:
            secrets = sorted({*_MASKED, *more}, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def cut(text: str, limit: int, extra: object = ()) -> str:
    """The first `limit` characters of `text`, masked before the cut (issue 16 B5): a
    secret cut in half no longer matches the mask, so its start would be shown."""
    return masked(text, extra)[:limit]


def masked_data(obj: object) -> object:
    """Every string in a JSON-like value (dict keys too) masked, before it is rendered."""
    if isinstance(obj, str):
        return masked(obj) if _MASKED else obj
    if isinstance(obj, dict):
        return {masked_data(k): masked_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [masked_data(v) for v in obj]
    return obj


def format_line(fmt: str, level: str, msg: str, fields: dict[str, object] | None = None) -> str:
    if _MASKED:
        msg = masked(msg)
        fields = masked_data(fields or {})  # type: ignore[assignment]
    if fmt == "json":
        import json

        return json.dumps({"time": timestamp(), "level": level, "msg": msg, **(fields or {})})
    return "waitfor: " + clean(msg)  # the fields repeat the message; JSON keeps them


class Log:
    """Leveled log lines on stderr (fd 2)."""

    def __init__(self, fmt: str = "text", verbosity: int = NORMAL, fd: int = 2) -> None:
        self.fmt, self.verbosity, self.fd = fmt, verbosity, fd
        self._lock = _thread.allocate_lock()

    def emit(self, level: str, msg: str, **fields: object) -> None:
        if _LEVELS[level] > self.verbosity:
            return
        data = (format_line(self.fmt, level, msg, fields) + "\n").encode("utf-8", "backslashreplace")
        with self._lock:
            try:
                while data:
                    data = data[os.write(self.fd, data):]
            except OSError:
                pass  # a closed or full stderr must not stop the container's init

    def debug(self, msg: str, **fields: object) -> None:
        self.emit("debug", msg, **fields)

    def info(self, msg: str, **fields: object) -> None:
        self.emit("info", msg, **fields)

    def warning(self, msg: str, **fields: object) -> None:
        self.emit("warning", msg, **fields)

    def error(self, msg: str, **fields: object) -> None:
        self.emit("error", msg, **fields)


class StdoutClosed(Exception):
    """The reader of stdout went away (`waitfor schema | head -1`): end quietly, as a
    Unix filter does when SIGPIPE kills it."""


def write_stdout(text: str) -> None:
    """Write a command's result to stdout in full, or raise: StdoutClosed for a closed
    pipe, WaitforError (exit 74, EX_IOERR) for any other write error such as /dev/full."""
    import errno

    data = masked(text).encode("utf-8", "surrogateescape")
    try:
        while data:
            data = data[os.write(1, data):]
    except OSError as e:
        if e.errno == errno.EPIPE:
            raise StdoutClosed from None
        raise WaitforError(f"cannot write to standard output: {e.strerror}", exitcodes.IO_ERROR) from None


def ensure_std_fds() -> None:
    """Open /dev/null on a closed stdin, stdout or stderr (`2>&-`). Else the next file or
    socket waitfor opens would get that number, and log lines would be written into it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if null != fd:  # the lowest free number: a lower one was closed too, and is next
                os.dup2(null, fd)
                os.close(null)
