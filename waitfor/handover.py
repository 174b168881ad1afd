"""Hand over to the app once every dependency is ready.

- exec mode (the default outside PID 1, or --exec): waitfor replaces itself with COMMAND,
  after restoring the signal dispositions and mask it inherited.
- supervise mode (the default as PID 1, or --init): waitfor replaces itself with a lean
  interpreter running waitfor.supervisor, which starts COMMAND as its child. Signals stay
  blocked across that exec, so one that arrives meanwhile stays pending and is forwarded
  once the app runs. The exec also drops every module the wait imported (yaml, tenacity,
  drivers), which keeps the idle init small.
"""

import os
import sys

from waitfor import exitcodes, sigstate
from waitfor.errors import UsageError, WaitforError

PR_SET_CHILD_SUBREAPER = 36  # prctl(2)


def is_pid1() -> bool:
    return os.getpid() == 1


def supervises(cfg) -> bool:
    """--init and --exec decide; otherwise supervise as PID 1, or when a flag needs it."""
    needs = [flag for flag, on in (("--group", cfg.group), ("--rewrite", cfg.rewrite),
                                   ("--success-exit", cfg.success_exit), ("watch", cfg.watch_interval),
                                   ("--probe-addr", cfg.probe_addr)) if on]
    if cfg.supervise == "exec":
        if needs:
            raise UsageError(f"--exec: {needs[0]} needs waitfor to supervise the app (drop --exec)")
        return False
    return cfg.supervise == "init" or is_pid1() or bool(needs)


def exec_app(command, inherited: sigstate.Inherited) -> None:
    """execvp(COMMAND) with the inherited signal state; raise WaitforError (126/127) if it fails."""
    sigstate.restore(inherited)
    try:
        os.execvp(command[0], list(command))
    except FileNotFoundError:
        raise WaitforError(f"{command[0]}: command not found", exitcodes.NOT_FOUND) from None
    except OSError as e:
        raise WaitforError(f"{command[0]}: cannot execute: {e.strerror}", exitcodes.CANNOT_EXECUTE) from None


def supervisor_args(cfg, inherited: sigstate.Inherited) -> list:
    """The supervisor's private argv protocol (parsed by waitfor.supervisor.parse)."""
    argv = ["--mask", sigstate.encode(inherited.mask), "--ignore", sigstate.encode(inherited.ignored),
            "--stop-timeout", repr(cfg.stop_timeout), "--stop-signal", str(cfg.stop_signal)]
    if cfg.group:
        argv.append("--group")
    if cfg.verbosity < 0:
        argv.append("--quiet")
    if cfg.log_format == "json":
        argv.append("--json")
    for src, dst in sorted(cfg.rewrite.items()):
        argv += ["--rewrite", f"{src}:{dst}"]
    for code in sorted(cfg.success_exit):
        argv += ["--success-exit", str(code)]
    return argv + ["--"] + list(cfg.command)


def supervise_argv(cfg, inherited: sigstate.Inherited) -> list:
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    boot = (
        f"import sys; sys.path.insert(0, {package_parent!r}); "
        "from waitfor.supervisor import main; sys.exit(main(sys.argv[1:]))"
    )
    # A blocked signal stays pending across execve(2), so the supervisor takes and forwards
    # whatever arrived during the wait; except SIGPIPE and SIGXFSZ, which the new
    # interpreter sets to SIG_IGN before any of our code runs, and setting SIG_IGN discards
    # a pending signal even while it is blocked (sigaction(2), POSIX). Name those instead.
    # (One that arrives between this sigpending() and the execve is still lost: the window
    # is a few system calls long, and no Python flag keeps the interpreter from ignoring
    # them.) The in-process supervisor of waitfor.runtime does not exec, so it needs none.
    pending = sigstate.pending() & sigstate.PYTHON_IGNORES
    extra = ["--pending", sigstate.encode(pending)] if pending else []
    if getattr(sys, "frozen", False):
        # A frozen bundle (packaging/): sys.executable is waitfor itself and takes no
        # interpreter flags; its hidden `_supervise` mode is the same lean entry.
        return [sys.executable, "_supervise"] + extra + supervisor_args(cfg, inherited)
    return [sys.executable, "-I", "-S", "-c", boot] + extra + supervisor_args(cfg, inherited)


def become_subreaper() -> None:
    """PR_SET_CHILD_SUBREAPER, so that orphans come to waitfor outside PID 1 too. The flag
    survives execve(2), so the lean supervisor keeps it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        why = os.strerror(ctypes.get_errno())
        raise WaitforError(f"--init: cannot become a child subreaper: {why}", exitcodes.INTERNAL)


def supervise_app(cfg, inherited: sigstate.Inherited) -> None:
    """Replace this process with the lean supervisor (signals still blocked)."""
    if not is_pid1():
        become_subreaper()
    argv = supervise_argv(cfg, inherited)
    sys.stderr.flush()
    os.execv(argv[0], argv)
