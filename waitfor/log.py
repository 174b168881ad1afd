"""Logs go to stderr only: stdout belongs to the app. Text by default, or one JSON object
per line. Threads share one lock so lines never interleave. (The logging module is not
used: importing it costs ~4 ms of start-up, and waitfor needs a few levels only.)"""

import _thread  # not threading: `waitfor -- app` logs too, and needs no threads
import sys
import time

QUIET, NORMAL, VERBOSE = -1, 0, 1
_LEVELS = {"debug": VERBOSE, "info": NORMAL, "warning": QUIET, "error": QUIET - 1}


class Log:
    def __init__(self, fmt: str = "text", verbosity: int = NORMAL, stream=None):
        self.fmt, self.verbosity = fmt, verbosity
        self.stream = stream or sys.stderr
        self._lock = _thread.allocate_lock()

    def _emit(self, level: str, msg: str, fields: dict) -> None:
        if _LEVELS[level] > self.verbosity:
            return
        if self.fmt == "json":
            import json

            line = json.dumps({"time": round(time.time(), 3), "level": level, "msg": msg, **fields})
        else:
            line = f"waitfor: {msg}"  # the fields repeat the message; JSON keeps them
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not stop the container's init

    def debug(self, msg, **fields):
        self._emit("debug", msg, fields)

    def info(self, msg, **fields):
        self._emit("info", msg, fields)

    def warning(self, msg, **fields):
        self._emit("warning", msg, fields)

    def error(self, msg, **fields):
        self._emit("error", msg, fields)
