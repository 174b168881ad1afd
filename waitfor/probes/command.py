"""`command: [argv...]`: ready when the program exits 0. No shell is involved.

The program runs in its own session so that a time-out kills it with everything it
started, and its output is kept only to report why it is not ready.

It is started with posix_spawn rather than subprocess.Popen, to give it an empty signal
mask: the probe threads run with SIGTERM, SIGINT, SIGHUP, SIGQUIT and SIGCHLD blocked
(the main thread waits for them with sigtimedwait; as PID 1 every signal is blocked), a
mask survives exec, and a probe such as `timeout 1 pg_isready` or a shell `trap` would
not work with it. SIGPIPE and SIGXFSZ, which Python ignores, are reset to the default.
"""

import os
import signal
import tempfile
import threading

from waitfor.probes.base import Broken, NotReady, accept_url

PORT = None
check_url = accept_url
SECRET_OPTIONS: tuple[str, ...] = ()
EXTRA = None  # no driver: nothing to install
DRIVER = None
OPTIONS = {}
TAIL = 4096  # bytes of output kept to say why it is not ready
_DEFAULTS = (signal.SIGPIPE, signal.SIGXFSZ)


def spawn(argv, out_fd: int) -> int:
    """Start argv (searched in PATH) in a new session, stdin from /dev/null, stdout and
    stderr to out_fd, with an empty signal mask. Raise Broken if it cannot be started."""
    try:
        return os.posix_spawnp(
            argv[0], argv, os.environ,
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                          (os.POSIX_SPAWN_DUP2, out_fd, 1), (os.POSIX_SPAWN_DUP2, out_fd, 2)],
            setsid=True, setsigmask=(), setsigdef=_DEFAULTS,
        )
    except FileNotFoundError:
        raise Broken(f"{argv[0]}: command not found") from None
    except PermissionError:
        raise Broken(f"{argv[0]}: permission denied") from None
    except OSError as e:
        raise Broken(f"{argv[0]}: {e.strerror}") from None


# The runtime watch probes while the supervisor loop reaps every child (waitpid(-1)) in
# the same process: it may reap a probe's program first. It then hands the status over
# with deliver(); without that, the status is lost and the attempt says so (it is not
# taken for exit 0, as subprocess would).
_cond = threading.Condition()
_running = set()
_reaped = {}
LOST = "lost"


def cancel() -> None:
    """The wait is over (a stop signal, a failure, the deadline): kill every program a
    probe still runs, with its session, rather than leave it behind re-parented to init."""
    with _cond:
        pids = list(_running)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def deliver(pid: int, status: int) -> bool:
    """For code that reaps every child: give a command probe the wait status of its
    program. Returns False when pid is not a command probe's."""
    with _cond:
        if pid not in _running:
            return False
        _reaped[pid] = os.waitstatus_to_exitcode(status)
        _cond.notify_all()
        return True


def wait(pid: int, timeout: float):
    """The exit code (negative: killed by that signal), None if it is still running after
    `timeout` seconds (it is then killed with its session), or LOST."""
    box = []
    done = threading.Event()

    def reap():
        try:
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

    threading.Thread(target=reap, name=f"reap {pid}", daemon=True).start()
    if done.wait(timeout):
        return box[0]
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    done.wait()
    return None


def probe_for(dep):
    argv = list(dep.argv)

    def probe(timeout: float):
        # Output goes to a file, not a pipe: the probe is over when the program exits, even
        # if something it started in the background still holds its stdout open.
        with tempfile.TemporaryFile() as out:
            with _cond:  # registered before anyone can reap it
                pid = spawn(argv, out.fileno())
                _running.add(pid)
            code = wait(pid, timeout)
            if code is None:
                raise NotReady(f"timed out after {timeout:.3g}s")
            if code == LOST:
                raise NotReady("its exit status was reaped elsewhere")
            if code != 0:
                out.seek(0, os.SEEK_END)
                out.seek(max(0, out.tell() - TAIL))
                lines = out.read().decode(errors="replace").strip().splitlines()
                why = f": {lines[-1][:200]}" if lines else ""
                status = f"killed by signal {-code}" if code < 0 else f"exit {code}"
                raise NotReady(f"{status}{why}")
        return "exit 0"

    return probe
