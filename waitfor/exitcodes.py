"""Exit codes, following shell conventions (bash(1) "EXIT STATUS", timeout(1)).

The README's exit-code table is written from this file; keep them in step.
"""

OK = 0
NOT_READY = 1  # `check` / `health`: something is not ready. Never 2: Docker reserves 2.
USAGE = 2  # bad flag, env var or config; nothing was started
INTERNAL = 70  # sysexits.h EX_SOFTWARE: a bug in waitfor (reported in one line, no traceback)
DEPENDENCY_LOST = 69  # sysexits.h EX_UNAVAILABLE: a watched dependency failed while the app ran
TIMEOUT = 124  # as timeout(1): dependencies were not ready before the deadline
CANNOT_EXECUTE = 126  # as bash: COMMAND exists but could not be executed
NOT_FOUND = 127  # as bash: COMMAND was not found
SIGNAL_BASE = 128  # 128+N: killed by (or stopped because of) signal N


def from_signal(signum: int) -> int:
    return SIGNAL_BASE + signum
