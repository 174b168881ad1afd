"""Local resource limits: when waitfor itself, not the dependency, runs out of something.

Out of file descriptors (ulimit -n), of the system's files, of memory or buffers, or of
threads (a pids cgroup limit, ulimit -u, or no address space for a stack under ulimit -v):
the attempt says so in one line, "local resource limit: ... (in waitfor, not the
dependency ...)", and is retried (NotReady), whatever layer the error came from. It is never
a crash, and never blamed on the dependency (issue 10 B7, issue 16 D14, D15).
"""

from __future__ import annotations

import errno
import os

from waitfor.probes.base import Broken, NotReady

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.probes.base import Probe

# The errnos that are waitfor's own limits; the scheduler says the same for its own sockets
# (waitfor.wait.engine), and connect_error (waitfor.probes.connect) for a connect.
LOCAL = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


# What CPython says when pthread_create fails (EAGAIN): a pids cgroup limit, ulimit -u, or
# no address space left for the thread's stack (ulimit -v).
NO_THREAD = "can't start new thread"


def local_limit(exc: BaseException) -> NotReady | None:
    """If `exc`, what caused it, or its message is a local resource limit: the NotReady
    that says so, without blaming the dependency. Else None."""
    e: BaseException | None = exc
    for _ in range(8):
        if e is None:
            break
        if isinstance(e, OSError) and e.errno in LOCAL:
            return NotReady(local_reason(e.errno))
        if isinstance(e, RuntimeError) and NO_THREAD in str(e):
            return NotReady("local resource limit: cannot start a thread (in waitfor, not the "
                            "dependency; a pids cgroup limit, ulimit -u or ulimit -v)")
        e = e.__cause__ or e.__context__
    text = str(exc)
    for num in LOCAL:  # drivers that keep only the words ("Error 24 connecting to ...")
        if os.strerror(num) in text:
            return NotReady(local_reason(num))
    return None


def local_reason(num: int) -> str:
    why = f"local resource limit: {os.strerror(num)} (in waitfor, not the dependency"
    if num == errno.EMFILE and _nofile > 0:
        why += f"; ulimit -n is {_nofile}"
    return why + ")"


def bounded(probe: Probe) -> Probe:
    """`probe`, with a local resource limit reported as one, whatever layer it came from."""

    def attempt(timeout: float) -> str | None:
        try:
            return probe(timeout)
        except Broken:
            raise
        except Exception as e:  # re-raised unless it is a local limit
            limit = local_limit(e)
            if limit is not None:
                raise limit from None
            raise

    return attempt


def preload_unwinder() -> None:
    """Load libgcc_s.so.1 now, while file descriptors are free, and note RLIMIT_NOFILE.

    At interpreter exit CPython ends a daemon thread that wakes (a pool thread, a
    reaper) with pthread_exit(), and glibc loads libgcc_s.so.1 on its first use to unwind
    the thread; if that dlopen finds no free fd (ulimit -n reached), glibc aborts the
    whole process ("libgcc_s.so.1 must be installed for pthread_exit to work", exit 134).
    Once loaded it is never opened again (the same glibc issue hits any program that
    exhausts its fds: https://sourceware.org/bugzilla/show_bug.cgi?id=13119)."""
    global _nofile
    import resource

    _nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        import ctypes

        ctypes.CDLL("libgcc_s.so.1")
    except (ImportError, OSError):  # musl (Alpine) has no such dlopen; nothing to do
        pass


_nofile = -1
