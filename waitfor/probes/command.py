"""`command: [argv...]`: ready when the program exits 0. No shell is involved.

Every process an attempt starts ends with it. The program runs in its own session and
process group; when it exits (or the attempt times out) the whole group is killed, so
`sh -c 'sleep 300 & exit 1'` leaves no sleep behind (tini and dumb-init kill the group
of what they started for the same reason). A descendant that left the group (`setsid`,
a daemonising double fork) is found by a marker in its environment, WAITFOR_PROBE,
inherited from the probe, and killed too (with psutil, imported only here and only when
an attempt ends). A program that clears its environment can still escape; nothing short
of a PID namespace or cgroup can find that one. Without /proc (a tmpfs over it, some
sandboxes) only the group is killed: the marker cannot be read.

Output goes to a pipe that the attempt drains as it runs, keeping only the last TAIL
bytes to say why it is not ready: `yes` costs CPU for the attempt's length, not memory or
disk (a temp file grew to 1.5 GiB before).

It is started with posix_spawn rather than subprocess.Popen, to give it an empty signal
mask: the probe threads run with SIGTERM, SIGINT, SIGHUP, SIGQUIT and SIGCHLD blocked
(the main thread waits for them with sigtimedwait; as PID 1 every signal is blocked), a
mask survives exec, and a probe such as `timeout 1 pg_isready` or a shell `trap` would
not work with it. SIGPIPE and SIGXFSZ, which Python ignores, are reset to the default.
With `user:` the program runs as that user (waitfor.process's rule for every child), by
fork and exec in the same way, since posix_spawn cannot change ids.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import threading
import time
from errno import EACCES, ENOENT, EPERM

from waitfor import process
from waitfor.probes.base import Broken, NotReady, accept_url, no_target

TYPE_CHECKING = False

PORT = None
READY_ON_CONNECT = False
STILL_THERE = "still reachable"  # what `invert: true` says while it answers
connect_target = no_target
check_url = accept_url
SECRET_OPTIONS: tuple[str, ...] = ()
EXTRA = None  # no driver: nothing to install
DRIVER = None
OPTIONS: Options = {}
TAIL = 4096  # bytes of output kept to say why it is not ready
_DEFAULTS = (signal.SIGPIPE, signal.SIGXFSZ)


MARK = "WAITFOR_PROBE"  # environment marker of everything an attempt started
_serial = itertools.count(1)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe



def spawn(argv: list[str], out_fd: int, env: dict[str, str] | None = None) -> int:
    """Start argv (searched in PATH) in a new session, stdin from /dev/null, stdout and
    stderr to out_fd, with an empty signal mask, as the user of `run` (waitfor.process:
    with `user:`, never as root). Raise Broken if it cannot be started."""
    if process.children_as() is not None:
        return _spawn_as_user(argv, out_fd, env)
    try:
        return os.posix_spawnp(
            argv[0], argv, os.environ if env is None else env,
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                          (os.POSIX_SPAWN_DUP2, out_fd, 1), (os.POSIX_SPAWN_DUP2, out_fd, 2)],
            setsid=True, setsigmask=(), setsigdef=_DEFAULTS,
        )
    except OSError as e:
        raise Broken(_why(argv[0], e.errno or 0)) from None


def _spawn_as_user(argv: list[str], out_fd: int, env: dict[str, str] | None) -> int:
    """The same as posix_spawnp above, by fork and exec: posix_spawn cannot change ids.
    The child of this (threaded) process makes only system calls before its exec."""
    def prepare() -> None:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # not left open in the check program
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        for sig in _DEFAULTS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())

    try:
        return process.spawn(argv, prepare, env)
    except process.Failed as e:
        if e.switching:
            raise Broken(f"{argv[0]}: cannot switch to the user: {os.strerror(e.errno)}") from None
        raise Broken(_why(argv[0], e.errno)) from None


def _why(program: str, errno: int) -> str:
    if errno == ENOENT:
        return f"{program}: command not found"
    if errno in (EACCES, EPERM):
        return f"{program}: permission denied"
    return f"{program}: {os.strerror(errno)}"


# The runtime watch probes while the supervisor loop reaps every child (waitpid(-1)) in
# the same process: it may reap a probe's program first. It then hands the status over
# with deliver(); without that, the status is lost and the attempt says so (it is not
# taken for exit 0, as subprocess would).
_cond = threading.Condition()
_running: set[int] = set()
_marks: dict[int, str] = {}  # pid -> its WAITFOR_PROBE value
_reaped: dict[int, int] = {}
LOST = "lost"


def cancel() -> None:
    """The wait is over (a stop signal, a failure, the deadline): kill every program a
    probe still runs, with its group and its escaped descendants, rather than leave them
    behind re-parented to init."""
    with _cond:
        pids = list(_running)
        marks = [_marks[p] for p in pids if p in _marks]
    for pid in pids:
        _kill_group(pid)
    if marks:
        sweep(marks)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:  # ESRCH: nothing left in it
        pass


def sweep(marks: Sequence[str]) -> int:
    """Kill every process whose environment carries one of `marks` (descendants that left
    the program's process group). Returns how many were killed.

    Without procfs (a tmpfs over /proc, some sandboxes) there is nothing to find them with:
    the sweep finds none, and only the process group is killed (issue 16 D16)."""
    if not os.path.isdir("/proc/self"):
        return 0
    try:
        import psutil
    except ImportError:  # a declared dependency, but a slimmed image may lack it
        return 0
    wanted = {f"{MARK}={m}".encode() for m in marks}
    me, killed = os.getpid(), 0
    try:
        procs = list(psutil.process_iter())
    except (OSError, IndexError, psutil.Error):  # /proc half there (psutil indexes its listing)
        return 0
    for proc in procs:
        if proc.pid == me:
            continue
        try:
            # /proc/PID/environ directly: psutil's environ() parses all of it into a dict.
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                env = f.read(1 << 20)
            if any(w in env.split(b"\0") for w in wanted):
                proc.kill()
                killed += 1
        except (OSError, psutil.Error):  # gone, or another user's (not ours to find)
            pass
    return killed


def deliver(pid: int, status: int) -> bool:
    """For code that reaps every child: give a command probe the wait status of its
    program. Returns False when pid is not a command probe's."""
    with _cond:
        if pid not in _running:
            return False
        _reaped[pid] = os.waitstatus_to_exitcode(status)
        _cond.notify_all()
        return True


def _reaper(pid: int, box: list[int | str], done: threading.Event) -> threading.Thread:
    def reap() -> None:
        try:
            # Wait for the exit without reaping: while it is a zombie its pid, which is
            # also its group's id, cannot be reused, so killing the group is safe.
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            _kill_group(pid)
            box.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        except ChildProcessError:  # reaped by someone else
            with _cond:
                _cond.wait_for(lambda: pid in _reaped, timeout=1.0)
                box.append(_reaped.pop(pid, LOST))
        finally:
            with _cond:
                _running.discard(pid)
                _reaped.pop(pid, None)
            done.set()

    t = threading.Thread(target=reap, name=f"reap {pid}", daemon=True)
    t.start()
    return t


def wait(pid: int, timeout: float, out: int | None = None, tail: bytearray | None = None) -> int | str | None:
    """The exit code (negative: killed by that signal), None if it is still running after
    `timeout` seconds (it is then killed with its group), or LOST. With `out`, the
    program's output pipe is drained meanwhile, its last TAIL bytes kept in `tail`."""
    box: list[int | str] = []
    done = threading.Event()
    try:
        _reaper(pid, box, done)
    except RuntimeError:  # no thread to be had (a pids limit): end it here, then say so
        _kill_group(pid)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # reaped by a supervisor's waitpid(-1)
            pass
        with _cond:
            _running.discard(pid)
        raise  # limits.local_limit names it
    deadline = time.monotonic() + timeout
    if out is None:
        finished = done.wait(timeout)
    else:
        finished = _drain(out, tail if tail is not None else bytearray(), done, deadline)
    if not finished:
        _kill_group(pid)
        done.wait()
        return None
    return box[0]


def _drain(out: int, tail: bytearray, done: threading.Event, deadline: float) -> bool:
    """Read `out` into `tail` (bounded) until the program exits or the deadline; True if
    it exited. Polls the pipe only: the reaper sets `done`, checked every 50 ms at most."""
    poller = select.poll()
    poller.register(out, select.POLLIN)
    open_ = True
    while not done.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return done.is_set()
        if not open_:
            return done.wait(left)
        if poller.poll(min(left, 0.05) * 1000):
            chunk = os.read(out, 65536)
            if not chunk:  # every writer closed it: only the exit is left to wait for
                poller.unregister(out)
                open_ = False
                continue
            tail += chunk
            if len(tail) > TAIL:
                del tail[:-TAIL]
    os.set_blocking(out, False)  # what it wrote last, without waiting for its children
    try:
        for _ in range(64):
            chunk = os.read(out, 65536)
            if not chunk:
                break
            tail += chunk
            del tail[:-TAIL]
    except BlockingIOError:
        pass
    return True


def last_line(tail: bytearray, secrets: frozenset[str] = frozenset()) -> str:
    """`: <the last line of output>`, masked before it is cut to 200 characters (issue 16
    B5), or "". When `tail` is the end of a longer output, its first line is a piece of a
    line, which may start inside a secret that no mask matches any more: it is dropped."""
    from waitfor.output import cut

    text = tail.decode(errors="replace")
    if len(tail) >= TAIL:
        text = text.partition("\n")[2]
    lines = text.strip().splitlines()
    return f": {cut(lines[-1], 200, secrets)}" if lines else ""


def probe_for(dep: Dependency) -> Probe:
    argv = list(dep.argv)

    def probe(timeout: float) -> str:
        mark = f"{os.getpid()}.{next(_serial)}"
        env = {**os.environ, MARK: mark}
        r, w = os.pipe()
        try:
            with _cond:  # registered before anyone can reap it
                pid = spawn(argv, w, env)
                _running.add(pid)
                _marks[pid] = mark
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        tail = bytearray()
        try:
            code = wait(pid, timeout, r, tail)
        finally:
            os.close(r)
            with _cond:
                _marks.pop(pid, None)
            sweep([mark])  # what left the group: `setsid`, daemons
        if code is None:
            raise NotReady(f"timed out after {timeout:.3g}s")
        if code == LOST:
            raise NotReady("its exit status was reaped elsewhere")
        if code != 0:
            why = last_line(tail, dep.secrets)
            status = f"killed by signal {-code}" if isinstance(code, int) and code < 0 else f"exit {code}"
            raise NotReady(f"{status}{why}")
        return "exit 0"

    return probe
