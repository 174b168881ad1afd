"""The init: start the app as a child, forward signals to it, reap zombies, pass its exit
code through. Modelled on tini's main loop, fixing what the peers get wrong:

- tini wakes once a second while idle (sigtimedwait with a 1 s timeout, to reap); here the
  loop blocks in sigwaitinfo() with no timeout, and SIGCHLD itself is what wakes it.
- dumb-init can lose a signal that arrives between fork and exec: the signal is delivered
  to the child while it still runs dumb-init's code. Here signals stay blocked in waitfor
  until the child has exec'd (the close-on-exec pipe reports EOF), then are forwarded.
- catatonit leaves job-control signals blocked in the child; here the child gets exactly
  the mask and ignored set that waitfor inherited.

This module is run in a fresh, lean interpreter (`python -I -S`, or the bundle's own
executable; see waitfor.supervise.launch) once the wait is over, so that it imports only
os, time, the C _signal module and waitfor's small signals/output/exitcodes/errors/process
(tests/test_architecture.py pins it): the RSS of an idle init is budgeted. Keep it that
way: no typing, dataclasses, yaml, tenacity, psutil; ctypes only with --user or
--pdeathsig.
The in-process supervisor (waitfor.supervise.inprocess) runs the same loop with hooks.
"""

from __future__ import annotations

import os
import time

from waitfor import exitcodes, process
from waitfor.output import Log
from waitfor.process import ids

# `signal` is the C module here (see waitfor.signals): the stdlib wrapper imports enum,
# functools and collections, 0.8 MiB of the idle supervisor's RSS (BENCHMARKS.md).
from waitfor.signals import Inherited, catchable, decode, encode, restore, signal, signal_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from ctypes import CDLL
    from typing import Any

    from waitfor.config.model import Config

# Every catchable signal but SIGCHLD is forwarded, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP
# and SIGSYS included: when one of those arrives here it was sent with kill(2) (by a user or
# an orchestrator) and is meant for the app, and dumb-init forwards them too (it blocks every
# signal; tini leaves these unblocked, so as PID 1 the kernel discards them). Blocking them
# costs nothing on a real fault of this process: the kernel unblocks a synchronous fault
# signal and restores its default action before delivering it (force_sig_info_to_task,
# kernel/signal.c), so the supervisor still dies of it.

def _flag(v: bool) -> str:
    return "1" if v else "0"


def _encode_rewrite(rw: dict[int, int]) -> str:
    return ",".join(f"{src}:{dst}" for src, dst in sorted(rw.items())) or "-"


def _decode_rewrite(text: str) -> dict[int, int]:
    pairs = [] if text == "-" else [p.split(":") for p in text.split(",")]
    return {int(src): int(dst) for src, dst in pairs}


def _encode_user(user: tuple[int, int, tuple[int, ...]] | None) -> str:
    return "-" if user is None else f"{user[0]}:{user[1]}:{','.join(map(str, user[2]))}"


def _decode_user(text: str) -> tuple[int, int, tuple[int, ...]] | None:
    if text == "-":
        return None
    uid, gid, groups = text.split(":")
    return int(uid), int(gid), tuple(int(g) for g in groups.split(",") if g)


# What the supervisor needs to know, one row per field of Options: (attribute, default
# (a factory: the value of a fresh Options), its value from the Config `c`, the inherited
# state `i` and the pending signals `p`, encode to and decode from the private argv of
# the lean re-exec, where it is `--ATTRIBUTE VALUE`). from_config, to_argv and from_argv
# follow from it; the COMMAND goes last, after `--`.
FIELDS: tuple[tuple[str, Callable[[], Any], Callable[[Config, Inherited, tuple[int, ...]], Any],
                    Callable[[Any], str], Callable[[str], Any]], ...] = (
    ("mask", frozenset, lambda c, i, p: i.mask, encode, decode),
    ("ignored", frozenset, lambda c, i, p: i.ignored, encode, decode),
    # the parent whose death --pdeathsig watches: the one waitfor started with (one that
    # died during the wait counts)
    ("ppid", os.getppid, lambda c, i, p: i.parent, str, int),
    ("pending", tuple, lambda c, i, p: p, encode, lambda t: tuple(sorted(decode(t)))),
    ("group", bool, lambda c, i, p: c.group, _flag, lambda t: t == "1"),
    ("rewrite", dict, lambda c, i, p: dict(c.rewrite), _encode_rewrite, _decode_rewrite),
    ("stop_timeout", lambda: 5.0, lambda c, i, p: c.stop_timeout, repr, float),
    ("stop_signal", lambda: int(signal.SIGTERM), lambda c, i, p: c.stop_signal, str, int),
    ("success_exit", frozenset, lambda c, i, p: frozenset(c.success_exit), encode, decode),
    ("verbosity", int, lambda c, i, p: c.verbosity, str, int),
    ("log_format", lambda: "text", lambda c, i, p: c.log_format, str, str),
    # --user, as numbers resolved at config time (pwd/grp are not imported here):
    # (uid, gid, supplementary gids), or None to keep waitfor's own ids
    ("user", lambda: None, lambda c, i, p: ids(c.user), _encode_user, _decode_user),
    ("leftovers", lambda: "kill", lambda c, i, p: c.leftovers, str, str),  # kill | term | keep
    ("pdeathsig", int, lambda c, i, p: c.pdeathsig, str, int),  # 0: none
    # secrets_env's NAMEs, whose values (in the environment) the re-exec masks in its log
    # lines too: names only, as argv is no place for a value
    ("secret_env", tuple, lambda c, i, p: c.secrets_env if isinstance(c.secrets_env, tuple) else (),
     ",".join, lambda t: tuple(n for n in t.split(",") if n)),
)


class Options:
    """What the supervisor needs to know (FIELDS): built from the Config in-process
    (from_config), and written to argv only across the lean re-exec (to_argv/from_argv).
    (A plain class: typing and dataclasses cost the idle init memory.)"""

    __slots__ = (*(f[0] for f in FIELDS), "command", "pid1")
    if TYPE_CHECKING:  # the types of FIELDS' rows, for mypy (tests/test_units.py compares)
        mask: frozenset[int]
        ignored: frozenset[int]
        ppid: int
        pending: tuple[int, ...]
        group: bool
        rewrite: dict[int, int]
        stop_timeout: float
        stop_signal: int
        success_exit: frozenset[int]
        verbosity: int
        log_format: str
        user: tuple[int, int, tuple[int, ...]] | None
        leftovers: str
        pdeathsig: int
        secret_env: tuple[str, ...]

    def __init__(self) -> None:
        for name, default, *_ in FIELDS:
            setattr(self, name, default())
        self.command: list[str] = []
        self.pid1 = os.getpid() == 1

    @classmethod
    def from_config(cls, cfg: Config, inherited: Inherited, pending: Iterable[int] = ()) -> Options:
        o, p = cls(), tuple(sorted(pending))
        for name, _, value, _, _ in FIELDS:
            setattr(o, name, value(cfg, inherited, p))
        o.command = list(cfg.command)
        return o

    def to_argv(self) -> list[str]:
        """The private argv protocol of the re-exec; from_argv reads it back."""
        argv = []
        for name, _, _, enc, _ in FIELDS:
            argv += [f"--{name}", enc(getattr(self, name))]
        return [*argv, "--", *self.command]

    @classmethod
    def from_argv(cls, argv: list[str]) -> Options:
        o, decoders = cls(), {f"--{f[0]}": (f[0], f[4]) for f in FIELDS}
        it = iter(argv)
        for a in it:
            if a == "--":
                o.command = list(it)
                break
            if a not in decoders:
                raise ValueError(f"unknown argument {a!r}")
            name, dec = decoders[a]
            setattr(o, name, dec(next(it)))
        return o


class Hooks:
    """What the in-process supervisor (waitfor.supervise.inprocess) adds to the loop; the
    lean one uses these no-ops. started(pid) once the app runs; lost() when SIGCHLD woke
    the loop but the app is still there (the watch wakes it with a thread-directed
    SIGCHLD when a dependency is lost); reaped(pid, status) for every other child reaped
    (the watch's probe programs run in this process, and waitpid(-1) may reap them
    first); stop() once the app is gone or being stopped."""

    def started(self, pid: int) -> None:
        pass

    def lost(self) -> bool:
        return False

    def reaped(self, pid: int, status: int) -> None:
        pass

    def stop(self) -> None:
        pass


def spawn(o: Options, tty: bool, log: Log) -> tuple[int | None, int | None]:
    """fork + exec the app with the inherited signal state, in its own process group, as
    o.user (waitfor.process.spawn).

    Returns (pid, None) once the child has exec'd, or (None, exit code) if it could not.
    """
    def prepare() -> None:
        os.setpgid(0, 0)
        if tty:
            try:  # SIGTTOU is still blocked here, so a background group may do this
                os.tcsetpgrp(0, os.getpgrp())
            except OSError:
                pass
        restore(Inherited(o.mask, o.ignored))

    try:
        return process.spawn(o.command, prepare, user=o.user), None
    except process.Failed as e:
        code, message = process.failure(o.command[0], o.user, e)
        log.error(f"error: {message}")
        return None, code


def status_to_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return exitcodes.from_signal(os.WTERMSIG(status))
    return os.WEXITSTATUS(status)


def reap(main_pid: int | None, hooks: Hooks, flags: int = 0) -> int | None:
    """Reap every zombie; return the main child's last wait status if it was among them.

    SIGCHLD is a standard signal: children that die together raise it once, so this drains
    every waitable child each time, and goes on after the main child reports a stop
    (WUNTRACED), lest the zombies beside it wait for the next SIGCHLD."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG | flags)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == main_pid:
            found = status
        else:
            hooks.reaped(pid, status)


def leftovers(pgid: int) -> list[tuple[int, int]]:
    """Our children and the members of process group pgid (for the subreaper; as PID 1,
    kill(-1) is used): (pid, its process group) pairs."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the comm field may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(b")") + 2:].split()
        if int(fields[1]) == me or int(fields[2]) == pgid:
            out.append((int(entry), int(fields[2])))
    return out


def has_children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return True
    except ChildProcessError:
        return False


def reap_until(deadline: float, hooks: Hooks, main_pid: int | None = None, flags: int = 0,
               step: float | None = None, each: Callable[[], None] | None = None) -> int | None:
    """Sleep in sigtimedwait(SIGCHLD) and reap until the deadline; the one such loop of
    the supervisor. Returns the main child's wait status once it has exited (a stop
    report, WUNTRACED, does not count); None at the deadline, or, without main_pid, as
    soon as no child is left. Each wait lasts at most `step` seconds, and `each()` runs
    after every wake-up (to signal orphans re-parented to the subreaper meanwhile)."""
    while True:
        status = reap(main_pid, hooks, flags)
        if main_pid is not None and status is not None and not os.WIFSTOPPED(status):
            return status
        if main_pid is None and not has_children():
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        signal.sigtimedwait({signal.SIGCHLD}, remaining if step is None else min(step, remaining))
        if each is not None:
            each()


def stop_the_rest(o: Options, main_pgid: int, log: Log, hooks: Hooks) -> None:
    """The main child is gone but others remain: SIGTERM them, then SIGKILL after the grace
    (--leftovers kill, the default); or one SIGTERM and no waiting (term), or nothing at
    all (keep): dumb-init's modes, where only the app's session gets the signal and
    dumb-init exits with the app. As PID 1 the kernel SIGKILLs whatever is left in the
    namespace once waitfor exits, so there `keep` and `term` only decide whether the rest
    get a SIGTERM first; outside PID 1 they are re-parented and keep running."""
    reap(None, hooks)
    if o.leftovers == "keep" or not has_children():
        return
    rest = _Rest(o, main_pgid, log)
    if o.leftovers == "term":
        log.info("app exited; sending SIGTERM to the processes left, and not waiting for them")
        rest.send(signal.SIGTERM)
        reap(None, hooks)
        return
    log.info(f"app exited; sending SIGTERM to the processes left, SIGKILL in {o.stop_timeout:g}s")
    rest.send(signal.SIGTERM)
    # outside PID 1, orphans re-parented to the subreaper meanwhile get the signal too
    term = None if o.pid1 else (lambda: rest.send(signal.SIGTERM))
    reap_until(time.monotonic() + o.stop_timeout, hooks, each=term)
    reap(None, hooks)
    if has_children():
        log.info("processes left after the grace period; sending SIGKILL")
        rest.send(signal.SIGKILL)
        kill = None if o.pid1 else (lambda: rest.send(signal.SIGKILL))
        reap_until(time.monotonic() + 5, hooks, step=0.1, each=kill)


class _Rest:
    """The processes left once the app is gone, and how they are signalled. As PID 1:
    kill(-1), every process in the namespace but init itself. Outside a namespace there is
    no "everyone": the app's process group, and our children (orphans re-parented to the
    subreaper, also during the grace). Each process gets SIGTERM once: many take a second
    one as "stop now, skip the clean shutdown" (a second Ctrl-C; `docker stop` and
    systemd send one, then SIGKILL)."""

    def __init__(self, o: Options, main_pgid: int, log: Log) -> None:
        self.pid1, self.pgid, self.log = o.pid1, main_pgid, log
        self.termed: set[int] = set()

    def send(self, sig: int) -> None:
        if self.pid1:
            signal_to(self.log, -1, sig)
            return
        found = leftovers(self.pgid)
        if sig == signal.SIGKILL or not self.termed:
            signal_to(self.log, self.pgid, sig, group=True)
            self.termed.update(pid for pid, pgid in found if pgid == self.pgid)
        for pid, _ in found:
            if sig == signal.SIGTERM:
                if pid in self.termed:
                    continue
                self.termed.add(pid)
            signal_to(self.log, pid, sig)


def stop_app(o: Options, pid: int, flags: int, log: Log, hooks: Hooks) -> None:
    """Stop the app with the stop signal, SIGKILL after the stop timeout. If even SIGKILL
    does not end it within 5 s (refused: the app is root again and this supervisor has no
    CAP_KILL), say so and go on rather than wait for ever."""
    log.info(f"stopping the app with {signal_name(o.stop_signal)}, SIGKILL in {o.stop_timeout:g}s")
    signal_to(log, pid, o.stop_signal, o.group)
    if reap_until(time.monotonic() + o.stop_timeout, hooks, pid, flags) is not None:
        return
    signal_to(log, pid, signal.SIGKILL, o.group)
    if reap_until(time.monotonic() + 5, hooks, pid, flags) is None:
        log.warning(f"the app (pid {pid}) is still running 5s after SIGKILL; leaving it behind")


def forward(o: Options, pid: int, sig: int, log: Log) -> None:
    target = o.rewrite.get(sig, sig)
    if target == 0:
        return  # --rewrite SIG:- drops it
    signal_to(log, pid, target, o.group)


_denied: set[tuple[int, bool]] = set()  # what signal_to was refused, said once each


def signal_to(log: Log, target: int, sig: int, group: bool = False) -> None:
    """kill(2) (killpg(3) with `group`). A target already gone is no error: its SIGCHLD is
    on the way. One that may not be signalled (EPERM: it runs as another user, root again
    through a set-user-ID program, and this supervisor could not keep CAP_KILL) is said
    once per target, in one line, instead of being ignored."""
    try:
        if group:
            os.killpg(target, sig)
        else:
            os.kill(target, sig)
    except PermissionError:
        if (target, group) not in _denied:
            _denied.add((target, group))
            what = "any process left" if target == -1 else f"process group {target}" if group else f"pid {target}"
            log.warning(f"cannot signal {what}: not permitted (it runs as another user, such as root "
                        "again through a set-user-ID program)")
    except OSError:
        pass


def supervise(o: Options, hooks: Hooks | None = None, drop: bool = False) -> int:
    """Spawn the app, then forward and reap until it exits; its exit code (see Hooks).
    With `drop` (the lean supervisor), the supervisor itself takes the app's ids once the
    app runs (drop_privileges)."""
    hooks = hooks or Hooks()
    log = Log(o.log_format, o.verbosity)
    forwardable = catchable()
    signal.pthread_sigmask(signal.SIG_BLOCK, forwardable)
    tty = os.isatty(0) and _is_foreground(0)
    keep_kill = drop and o.user is not None
    lib = process.libc() if keep_kill or (o.pdeathsig and not o.pid1) else None
    pid, failure = spawn(o, tty, log)
    if pid is None:
        return failure or exitcodes.INTERNAL
    if drop:
        drop_privileges(o, lib, log)
    if o.pdeathsig and not o.pid1 and lib is not None:
        process.set_pdeathsig(o.pdeathsig, o.ppid, lib)
    # SIGPIPE or SIGXFSZ that were pending when waitfor exec'd this interpreter: Python's
    # start-up set them to SIG_IGN, which discarded them (sigaction(2)), so the hand-over
    # named them (waitfor.supervise.launch.reexec).
    for sig in o.pending:
        forward(o, pid, sig, log)
    hooks.started(pid)
    flags = os.WUNTRACED if tty and not o.pid1 else 0  # job control
    status = wait_for_app(o, pid, flags, forwardable, hooks, log)
    if status is None:
        return stop_for_lost_dependency(o, pid, flags, hooks, log)
    hooks.stop()  # no more probing (nor probe programs) once the app is gone
    if tty:
        _take_terminal_back(pid)
    code = status_to_code(status)
    stop_the_rest(o, pid, log, hooks)
    return 0 if code in o.success_exit else code


def drop_privileges(o: Options, lib: CDLL | None, log: Log) -> None:
    """The lean supervisor, once the app runs: take the app's ids, keeping CAP_KILL alone
    (forwarding, reaping and stopping what the app left behind need no more), and leave
    the launch directory (chdir /, as dumb-init does) so that it does not keep it busy
    (the app keeps its own: it was forked before)."""
    if o.user is not None:
        if o.log_format == "json":
            import json  # noqa: F401 - output.format_line imports it lazily: not as a user who may not read it
        if not process.become_keeping_kill(o.user, lib or process.libc()):
            log.warning("--user: the kernel did not let waitfor keep CAP_KILL: a process of the app "
                        "that becomes root again cannot be signalled")
    try:
        os.chdir("/")
    except OSError:
        pass


def wait_for_app(o: Options, pid: int, flags: int, forwardable: list[int], hooks: Hooks, log: Log) -> int | None:
    """Forward every signal to the app and reap every child, until the app exits: its
    wait status; or None when a lost dependency woke the loop (Hooks.lost)."""
    while True:
        sig = signal.sigwaitinfo(forwardable).si_signo
        if sig != signal.SIGCHLD:
            forward(o, pid, sig, log)
            continue
        status = reap(pid, hooks, flags)
        if status is None:
            if hooks.lost():
                return None
        elif os.WIFSTOPPED(status):
            stop_with_the_app(pid, log)
        else:
            return status


def stop_for_lost_dependency(o: Options, pid: int, flags: int, hooks: Hooks, log: Log) -> int:
    """The runtime watch lost a dependency: stop probing, stop the app and the rest."""
    hooks.stop()
    stop_app(o, pid, flags, log, hooks)
    stop_the_rest(o, pid, log, hooks)
    return exitcodes.DEPENDENCY_LOST


def stop_with_the_app(pid: int, log: Log) -> None:
    """Job control: Ctrl-Z stopped the app: stop too, so that the shell sees its job stop
    and takes the terminal back. The shell continues us with `fg` (it gives our group the
    terminal first, then sends SIGCONT: bash's start_job) or with `bg` (SIGCONT only):
    pass the terminal on to the app only in the first case, else a `bg` job would steal
    it from the shell (SIGTTOU is blocked here, so tcsetpgrp(3) would not stop us)."""
    os.kill(os.getpid(), signal.SIGSTOP)  # stops before kill() returns
    # The SIGCONT that woke us stays pending, as it is blocked: the killpg() below passes
    # it on. Take it now, else the loop would forward it later, a second time, and undo a
    # ^Z typed in between.
    signal.sigtimedwait([signal.SIGCONT], 0)
    if _is_foreground(0):
        try:
            os.tcsetpgrp(0, pid)
        except OSError:
            pass
    signal_to(log, pid, signal.SIGCONT, group=True)


def _take_terminal_back(app_pgid: int) -> None:
    """The app's group was the terminal's foreground and is gone: make ours the foreground
    again, as a shell does when a job ends. Else whatever reads the terminal after waitfor
    (`waitfor --init -- app; read answer` in a script) is in a background group and gets
    EIO or SIGTTIN."""
    try:
        if os.tcgetpgrp(0) == app_pgid:
            os.tcsetpgrp(0, os.getpgrp())  # SIGTTOU is blocked: allowed from the background
    except OSError:
        pass


def _is_foreground(fd: int) -> bool:
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def retitle(command: list[str]) -> None:
    """Show this process as `waitfor -- COMMAND` in ps(1) and `podman top`, not as the
    `python3 -I -S -c ...` one-liner of the re-exec. /proc/PID/cmdline is read from the
    process's own argument area (arg_start..arg_end, proc(5)), which a process may rewrite
    through /proc/self/mem, as setproctitle does through the argv pointers; no ctypes is
    needed, so the idle init's RSS is unchanged. Best effort: any failure leaves it as is."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rfind(b")") + 2:].split()
        start, end = int(fields[45]), int(fields[46])  # fields 48 and 49 of proc(5)
        title = b"\0".join([b"waitfor", b"--"] + [os.fsencode(a) for a in command])
        title = title[:end - start - 1]
        fd = os.open("/proc/self/mem", os.O_RDWR)
        try:
            os.pwrite(fd, title + b"\0" * (end - start - len(title)), start)
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        pass


def main(argv: list[str]) -> int:
    """The lean re-exec's entry: argv is Options.to_argv()."""
    try:
        o = Options.from_argv(argv)
    except (ValueError, StopIteration) as e:
        Log().error(f"internal error: bad supervisor arguments: {e}")
        return exitcodes.INTERNAL
    retitle(o.command)
    if o.secret_env:
        from waitfor.output import mask

        mask(os.environ.get(name, "") for name in o.secret_env)
    try:
        return supervise(o, drop=True)
    except Exception as e:  # noqa: BLE001 - one line, never a traceback, even from the init
        Log(o.log_format).error(f"internal error: {type(e).__name__}: {e}")
        return exitcodes.INTERNAL
