"""Helpers for the black-box PID 1 and init tests (test_pid1, test_init_modes, test_run_as).

waitfor is always run through its real CLI (`python -m waitfor`), as PID 1 of a fresh PID
namespace (`unshare --pid --fork --mount-proc`, as a container runtime would start it) or
as a plain process. The apps it runs are small `python -I -S -c` programs (below) that
write what they saw, one line at a time, to a "report" pipe whose write end they inherit
(its number is in $REPORT_FD). Every wait on a report is bounded: a lost signal fails the
test with a time-out instead of hanging it.
"""

import os
import select
import signal
import subprocess
import time

from helpers.core import PY, REPO, WAITFOR, repo_env  # noqa: F401 - REPO: tests import it from here too

# --kill-child: if the test (or unshare) dies, the namespace's init is SIGKILLed, and with
# it every process of the namespace: nothing outlives a failed test.
NS = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]

_ns_reason = None


def pid_namespace_unavailable():
    """None if `unshare --pid` works here, else why not (for pytest.skip)."""
    global _ns_reason
    if _ns_reason is None:
        try:
            r = subprocess.run(NS + ["true"], capture_output=True, timeout=10)
            _ns_reason = "" if r.returncode == 0 else (
                f"unshare --pid --fork --mount-proc is not permitted here (exit {r.returncode}: "
                f"{r.stderr.decode(errors='replace').strip()}); run these tests as root")
        except FileNotFoundError:
            _ns_reason = "unshare(1) (util-linux) is not installed"
        except subprocess.TimeoutExpired:
            _ns_reason = "unshare --pid hung"
    return _ns_reason or None


def sig_name(n: int) -> str:
    if signal.SIGRTMIN <= n <= signal.SIGRTMAX:
        return f"SIGRTMIN+{n - signal.SIGRTMIN}"
    return signal.Signals(n).name


def catchable():
    return sorted(int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP))


def sigmask_of(status_text: str, field: str) -> set:
    """The set of signals of a SigBlk/SigIgn/SigCgt/SigPnd line of /proc/PID/status."""
    for line in status_text.splitlines():
        if line.startswith(field + ":"):
            bits = int(line.split()[1], 16)
            return {n for n in range(1, 65) if bits >> (n - 1) & 1}
    raise AssertionError(f"no {field} in {status_text!r}")


class Lines:
    """Read lines from a pipe, each with a deadline (never blocks past it)."""

    def __init__(self, fd: int):
        self.fd, self.buf, self.eof, self.seen = fd, b"", False, []

    def _fill(self, deadline) -> bool:
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        ready, _, _ = select.select([self.fd], [], [], left)
        if not ready:
            return False
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def line(self, timeout: float = 10.0):
        """The next line (without newline), or None on time-out or EOF."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if not self._fill(deadline):
                return None
        line, self.buf = self.buf.split(b"\n", 1)
        text = line.decode(errors="replace")
        self.seen.append(text)
        return text

    def until(self, pred, timeout: float = 10.0):
        """Read lines until one satisfies pred; return it (None on time-out/EOF)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(max(deadline - time.monotonic(), 0))
            if line is None or pred(line):
                return line

    def rest(self, timeout: float = 5.0) -> list:
        """Every line until EOF (all writers gone) or the time-out."""
        out = []
        while True:
            line = self.line(timeout)
            if line is None:
                return out
            out.append(line)


def child_pids(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def descendants(root: int) -> list:
    """Every process below root, now."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            parent[int(entry)] = int(stat[stat.rfind(b")") + 2:].split()[1])
    found, todo = [], [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        todo += kids
    return found


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:].split()[0] != b"Z"


class Waitfor:
    """One run of `waitfor [ARGS] -- APP`, as PID 1 of a new PID namespace (pid1=True) or
    as a plain child of the test. stdout and stderr are pipes read with deadlines; the app's
    report pipe is `self.report`."""

    def __init__(self, args, app, *, pid1=True, env=None, preexec_fn=None, stdin=subprocess.DEVNULL,
                 cwd=None, prefix=None, new_session=True):
        r, w = os.pipe()
        self.report = Lines(r)
        argv = list(prefix or []) + (NS if pid1 else []) + WAITFOR + list(args) + ["--"] + list(app)
        full_env = repo_env(REPORT_FD=str(w))
        full_env.update(env or {})
        self.env, self.pid1 = full_env, pid1
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     pass_fds=(w,), env=full_env, cwd=cwd, preexec_fn=preexec_fn,
                                     start_new_session=new_session)
        os.close(w)
        self.stdout, self.stderr = Lines(self.proc.stdout.fileno()), Lines(self.proc.stderr.fileno())
        self._pid = None if pid1 else self.proc.pid
        self.returncode = None

    @property
    def pid(self) -> int:
        """waitfor's pid as the test sees it (for PID 1: unshare's child, the namespace's init)."""
        deadline = time.monotonic() + 10
        while self._pid is None:
            kids = child_pids(self.proc.pid)
            if kids:
                self._pid = kids[0]
            elif time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("the namespace's init did not show up")
            else:
                time.sleep(0.002)
        return self._pid

    def kill(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for exit; collect the rest of stdout and stderr. Returns the exit code."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(f"waitfor did not exit within {timeout}s; stderr so far: {self.err!r}") from None
        self.elapsed = time.monotonic() - self.started
        self.stdout.rest(2)
        self.stderr.rest(2)
        self.returncode = self.proc.returncode
        return self.returncode

    @property
    def out(self) -> str:
        return "".join(line + "\n" for line in self.stdout.seen) + self.stdout.buf.decode(errors="replace")

    @property
    def err(self) -> str:
        return "\n".join(self.stderr.seen + [self.stderr.buf.decode(errors="replace")])

    def close(self) -> None:
        if self.proc.poll() is None:
            # After a failed test: outside a namespace the app and its children are in
            # groups of their own, so kill every descendant; in one, killing its init
            # takes the namespace down (unshare's --kill-child alone does not once the
            # init has switched to --user: a change of ids clears PR_SET_PDEATHSIG).
            init = child_pids(self.proc.pid) if self.pid1 else descendants(self.proc.pid)
            for pid in init + [self.proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.wait(10)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        try:
            os.close(self.report.fd)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def app(source: str, *args) -> list:
    """argv running a small Python program (isolated, no site: ~10 ms to start)."""
    return [PY, "-I", "-S", "-c", source] + [str(a) for a in args]


# Common prologue of the apps: `say(text)` writes one line to the report pipe.
PROLOGUE = """
import os, signal, sys, time
REPORT = int(os.environ["REPORT_FD"])
def say(text):
    os.write(REPORT, (text + "\\n").encode())
CATCHABLE = sorted(int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP))
"""

# Blocks every signal, says "ready PID PGID PPID", then reports each signal it receives
# as "sig N PID SENDER" until it has received COUNT of them; exits with CODE. With "fork",
# a second process in the same process group does the same (for --group); with
# "fork-wait", the app waits for it before it exits.
SIGWAIT_APP = PROLOGUE + """
count, code, fork = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if sys.argv[3:] else None
signal.pthread_sigmask(signal.SIG_BLOCK, CATCHABLE)
kid = os.fork() if fork else None
# the kid's exit raises SIGCHLD in the main process: not one that waitfor sent
waited = [s for s in CATCHABLE if not (fork and s == signal.SIGCHLD)]
say(f"ready {os.getpid()} {os.getpgrp()} {os.getppid()}")
for _ in range(count):
    info = signal.sigwaitinfo(waited)
    say(f"sig {info.si_signo} {os.getpid()} {info.si_pid}")
if kid and fork == "fork-wait":
    os.waitpid(kid, 0)
os._exit(code)
"""

# Reports its signal state as inherited, before touching anything: /proc/self/status.
# (The Python interpreter itself changes SIGINT/SIGPIPE/SIGXFSZ at start-up, so apps that
# must see the raw state are `cat /proc/self/status` instead; see test_pid1.)
STATUS_APP = ["cat", "/proc/self/status"]
