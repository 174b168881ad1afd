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


# Values that no log line may show (secrets_env): replaced by *** in every message and field.
_MASKED: list[str] = []


def mask(values: object) -> None:
    """Mask these strings in every line logged from now on (longest first, 3+ characters,
    as waitfor.secrets.redact; inline here, as the lean supervisor imports this module)."""
    _MASKED.extend(v for v in values if isinstance(v, str) and len(v) >= 3)  # type: ignore[attr-defined]
    _MASKED.sort(key=len, reverse=True)


def _masked(text: str) -> str:
    for secret in _MASKED:
        text = text.replace(secret, "***")
    return text


def format_line(fmt: str, level: str, msg: str, fields: dict[str, object] | None = None) -> str:
    if _MASKED:
        msg = _masked(msg)
        fields = {k: _masked(v) if isinstance(v, str) else v for k, v in (fields or {}).items()}
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

    data = text.encode("utf-8", "surrogateescape")
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
