"""Exit codes, following shell conventions (bash(1) "EXIT STATUS", timeout(1)), mapped in
this one place. The README's exit-code table is written from this file; keep them in step.
"""

from __future__ import annotations

OK = 0
NOT_READY = 1  # `check` / `health`: something is not ready. Never 2: Docker reserves 2.
USAGE = 2  # bad flag, env var or config; nothing was started
DEPENDENCY_LOST = 69  # sysexits.h EX_UNAVAILABLE: a watched dependency failed while the app ran
INTERNAL = 70  # sysexits.h EX_SOFTWARE: a bug in waitfor (reported in one line, no traceback)
OS_LIMIT = 71  # sysexits.h EX_OSERR ("cannot fork"): a local resource limit where waitfor cannot carry on
IO_ERROR = 74  # sysexits.h EX_IOERR: a result could not be written to stdout (a full disk)
TIMEOUT = 124  # as timeout(1): dependencies were not ready before the deadline
CANNOT_EXECUTE = 126  # as bash: COMMAND exists but could not be executed
NOT_FOUND = 127  # as bash: COMMAND was not found
SIGNAL_BASE = 128  # 128+N: killed by (or stopped because of) signal N


def from_signal(signum: int) -> int:
    return SIGNAL_BASE + signum


def exec_failure(name: str, err: int) -> tuple[int, str]:
    """(exit code, message) for an execve(2) of COMMAND that failed with errno `err`, as
    bash reports it: ENOENT is 127, `command not found`; any other reason, ENOTDIR, EACCES and ENOEXEC included, is 126
    with the system's words. Used by every exec path (exec mode and both supervisors)."""
    import errno
    import os

    if err == errno.ENOENT:
        return NOT_FOUND, f"{name}: command not found"
    why = os.strerror(err) if err else "unknown error"
    return CANNOT_EXECUTE, f"{name}: cannot execute: {why}"
