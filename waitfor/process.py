"""The processes waitfor starts, and the ids they run with: one rule for every launch path.

With `user:` (`--user`, `WAITFOR_USER`), `run` gives waitfor's children the user's ids:
the app, and every `command:` check (of the wait, of the runtime watch and of `health:`),
with the user's groups and HOME, and no capability. Only waitfor's own code keeps root.
The rule is set once (`run_children_as`: by `commands/run.py` once the switch is known to
be allowed, by `cli.dispatch` for `health`/`check` run as root) and applied here, where
children are started (`spawn`, used by the supervisors and by `probes/command.py`), not
by each caller.

Also here, as the one leaf both supervisors use: `become` (gosu's order of set*id calls)
and `become_keeping_kill` (the lean supervisor's own drop), prctl(2) and capset(2) through
ctypes (`libc`, `set_pdeathsig`, `become_subreaper`), and the one wording of a failed exec
or switch (`failure`). Imported by the lean supervisor too: os only at import, no typing.
"""

from __future__ import annotations

import os

from waitfor import exitcodes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from ctypes import CDLL

    User = tuple[int, int, tuple[int, ...]]  # uid, gid, supplementary gids

PR_SET_PDEATHSIG = 1  # prctl(2)
PR_SET_KEEPCAPS = 8
PR_SET_CHILD_SUBREAPER = 36
CAP_KILL, CAP_SETGID, CAP_SETUID = 5, 6, 7  # capability(7)
_LINUX_CAPABILITY_VERSION_3 = 0x20080522  # capget(2): two 32-bit words per set

# The ids (and HOME) that every child of this process gets: None keeps waitfor's own.
_children: tuple[User, str | None] | None = None


def run_children_as(user: User | None, home: str | None = None) -> None:
    """From now on, every child `spawn` starts runs as `user`, with HOME=`home` (None: the
    HOME of the environment it is given)."""
    global _children
    _children = None if user is None else (user, home)


def children_as() -> tuple[User, str | None] | None:
    return _children


def ids(user: tuple[str, int, int, tuple[int, ...], str] | None) -> User | None:
    """The numbers of a Config's `user` (spec, uid, gid, groups, home)."""
    return None if user is None else (user[1], user[2], tuple(user[3]))


def become(user: User) -> None:
    """Take on the user's ids for good: the supplementary groups first, then the gid, then
    the uid (after setuid a process may no longer change the others), as gosu and su-exec
    do. setgid/setuid as root set the real, effective and saved ids alike: the process
    cannot get root back."""
    uid, gid, groups = user
    os.setgroups(list(groups))
    os.setgid(gid)
    os.setuid(uid)


def become_keeping_kill(user: User, lib: CDLL) -> bool:
    """become(user), keeping the capability to signal any process (CAP_KILL) and no other:
    a process of the app that regained root through a set-user-ID program (sudo, su, a
    helper doing setresuid(0, 0, 0)) can still be stopped. Returns False when the kernel
    refused to keep it (the ids are switched all the same, with no capability left).

    The order makes every failure safe: the capabilities are first cut to the three that
    the switch and the signals need (while root); PR_SET_KEEPCAPS keeps the permitted set
    across setuid (it clears the effective set); then CAP_KILL alone is made effective and
    permitted again. Without KEEPCAPS, setuid to a non-zero uid clears every capability.
    The flag is not inherited by a child that execs a program as this user, and the app
    was started before: neither the app nor anything else waitfor starts gets CAP_KILL."""
    kill = 1 << CAP_KILL
    keeping = _capset(lib, kill | 1 << CAP_SETUID | 1 << CAP_SETGID) and \
        lib.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == 0
    become(user)
    if not keeping:
        return False
    lib.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)
    if not _capset(lib, kill):  # lowering never fails; if it did, do not go on with more
        raise OSError("capset(CAP_KILL) failed after the switch to the user")
    return True


def _capset(lib: CDLL, caps: int) -> bool:
    """capset(2) of this thread (the lean supervisor has one): effective = permitted =
    `caps` (bits below 32), inheritable none."""
    import ctypes

    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(caps, caps, 0, 0, 0, 0)  # {effective, permitted, inheritable} x 2
    return lib.capset(header, data) == 0


class Failed(Exception):
    """A child could not be started: its errno, and whether it was the switch to the user
    (`switching`) or the exec that failed. The child is reaped."""

    def __init__(self, errno: int, switching: bool) -> None:
        super().__init__(errno, switching)
        self.errno, self.switching = errno, switching


def failure(command: str, user: User | None, e: Failed) -> tuple[int, str]:
    """The exit code and the one-line message of a launch that failed, for every launch
    path (exec mode, both supervisors): exec failures as the shells word them (126/127),
    a refused switch to the user as an internal error (70)."""
    if e.switching and user is not None:
        why = os.strerror(e.errno)
        return exitcodes.INTERNAL, f"--user: cannot switch to uid {user[0]}, gid {user[1]}: {why}"
    return exitcodes.exec_failure(command, e.errno)


def switch(user: User) -> None:
    """become(user), or raise Failed (switching). execvp's PATH search imports `warnings`
    (os.get_exec_path): it is imported first, while the interpreter's files are still
    readable (a stdlib under /root is not to nobody); callers that fork do this in the
    child, so that the parent stays lean."""
    import warnings  # noqa: F401

    try:
        become(user)
    except OSError as e:
        raise Failed(e.errno or 0, True) from None


def execvp(argv: list[str], env: Mapping[str, str] | None = None) -> None:
    """os.execvp (or execvpe with `env`); raise Failed if it returns."""
    try:
        if env is None:
            os.execvp(argv[0], argv)
        else:
            os.execvpe(argv[0], argv, env)
    except OSError as e:
        raise Failed(e.errno or 0, False) from None


def spawn(argv: list[str], prepare: Callable[[], None], env: Mapping[str, str] | None = None,
          user: User | None = None) -> int:
    """fork, then in the child: prepare() (system calls only: process group, descriptors,
    signal state), the switch to `user` (default: the rule of run_children_as, with its
    HOME), and the exec. Returns the pid once the child has exec'd; raises Failed (with
    the child reaped) if it could not. A close-on-exec pipe tells the two apart: EOF
    means exec'd, else the child wrote why ("u" for the switch, then the errno)."""
    if user is None and _children is not None:
        user, home = _children
        if home is not None:
            env = {**(os.environ if env is None else env), "HOME": home}
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child: only system calls from here to exec
        try:
            os.close(r)
            prepare()
            if user is not None:
                switch(user)
            execvp(argv, env)
        except Failed as e:
            os.write(w, b"%s%d" % (b"u" if e.switching else b"", e.errno))
        except OSError as e:
            os.write(w, b"%d" % (e.errno or 0))
        except BaseException:  # noqa: BLE001 - the child must reach os._exit, whatever happened
            os.write(w, b"0")
        os._exit(exitcodes.NOT_FOUND)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 64)
        if not chunk:
            break
        data += chunk
    os.close(r)
    if not data:
        return pid
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # a supervisor's waitpid(-1) was first
        pass
    raise Failed(int(data.lstrip(b"u") or 0), data.startswith(b"u"))


def libc() -> CDLL:
    """The C library, through ctypes: imported only for prctl(2)/capset(2) (it costs the
    idle supervisor ~0.5 MiB, BENCHMARKS.md), and before become(), while the interpreter's
    files are readable."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def set_pdeathsig(sig: int, ppid: int, lib: CDLL | None = None) -> None:
    """prctl(PR_SET_PDEATHSIG): the kernel sends `sig` when the parent dies (tini -p). The
    setting is cleared by a change of credentials (prctl(2)), so it is made after
    become(); and if the parent is gone already (re-parented), send it now."""
    lib = lib or libc()
    if lib.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError("prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != ppid:
        os.kill(os.getpid(), sig)  # blocked: the loop takes it and passes it on


def become_subreaper() -> None:
    """PR_SET_CHILD_SUBREAPER, so that orphans come to waitfor outside PID 1 too. The flag
    survives execve(2), so the lean supervisor keeps it."""
    import ctypes

    lib = libc()
    if lib.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        from waitfor.errors import WaitforError

        why = os.strerror(ctypes.get_errno())
        raise WaitforError(f"--init: cannot become a child subreaper: {why}", exitcodes.INTERNAL)
