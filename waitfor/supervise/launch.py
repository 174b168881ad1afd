"""Hand over to the app once every dependency is ready.

- exec mode (the default outside PID 1, or --exec): waitfor replaces itself with COMMAND,
  after restoring the signal dispositions and mask it inherited.
- lean supervision (the default as PID 1, or --init): waitfor replaces itself with a lean
  interpreter running waitfor.supervise.init, which starts COMMAND as its child. Signals
  stay blocked across that exec, so one that arrives meanwhile stays pending and is
  forwarded once the app runs. The exec also drops every module the wait imported (yaml,
  tenacity, drivers), which keeps the idle init small.
- in-process supervision (a runtime watch or a probe endpoint): waitfor.supervise.inprocess.
"""

from __future__ import annotations

import os
import sys

from waitfor import signals
from waitfor.config.model import SETTINGS
from waitfor.errors import UsageError, WaitforError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Config
    from waitfor.signals import Inherited


def is_pid1() -> bool:
    return os.getpid() == 1


def supervises(cfg: Config) -> bool:
    """--init and --exec decide; otherwise supervise as PID 1, or when a setting needs it
    (the rows of SETTINGS marked needs_supervision)."""
    needs = [s.flag for s in SETTINGS if s.needs_supervision and getattr(cfg, s.key)]
    if cfg.supervise == "exec":
        if needs:
            raise UsageError(f"--exec: {needs[0]} needs waitfor to supervise the app (drop --exec)")
        return False
    return cfg.supervise == "init" or is_pid1() or bool(needs)


def exec_app(command: tuple[str, ...], inherited: Inherited,
             user: tuple[int, int, tuple[int, ...]] | None = None, pdeathsig: int = 0) -> None:
    """execvp(COMMAND) with the inherited signal state, as `user` (uid, gid, groups) when
    given; raise WaitforError (126/127, or 70 for a refused switch) if it fails. With
    `pdeathsig` (not as PID 1) the app itself gets the signal when waitfor's parent dies:
    the setting survives execve(2), and is made after the switch, which clears it."""
    from waitfor import process

    lib = process.libc() if pdeathsig and not is_pid1() else None  # before the switch
    try:
        if user is not None:
            process.switch(user)
        if lib is not None:
            process.set_pdeathsig(pdeathsig, inherited.parent, lib)
        signals.restore(inherited)
        process.execvp(list(command))
    except process.Failed as e:
        code, message = process.failure(command[0], user, e)
        raise WaitforError(message, code) from None


def check_user(cfg: Config) -> Config:
    """--user, before the wait: only root may switch (exit 2 otherwise), and switching to
    the ids waitfor already has is a no-op, as `gosu $(id -u)` is. Returns the Config with
    `user` None when there is nothing to switch."""
    if cfg.user is None:
        return cfg
    spec, uid, gid, groups, _ = cfg.user
    if (uid, gid) == (os.getuid(), os.getgid()) == (os.geteuid(), os.getegid()) and (
            not groups or set(groups) <= set(os.getgroups()) | {gid}):
        return cfg._replace(user=None)
    if os.geteuid() != 0:
        raise UsageError(f"--user {spec}: not root, cannot switch user (waitfor runs as uid {os.geteuid()})")
    return cfg


def app_home(cfg: Config) -> str | None:
    """The HOME the app gets with --user: USER's from the password database, as gosu and
    su-exec set it; unless HOME was set to something of its own (None: keep it). The
    runtime's HOME of root (/root, which Docker sets) is replaced."""
    if cfg.user is None:
        return None
    import pwd

    try:
        own = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        own = None
    return cfg.user[4] if os.environ.get("HOME") in (None, "", own) else None


def set_home(cfg: Config) -> None:
    home = app_home(cfg)
    if home is not None:
        os.environ["HOME"] = home


def run_children_as_user(cfg: Config) -> None:
    """--user, once check_user allowed it: every program waitfor starts from now on (the
    app, every command check of the wait, the watch and health) runs as USER, with USER's
    groups and the app's HOME (waitfor.process)."""
    from waitfor import process

    process.run_children_as(process.ids(cfg.user), app_home(cfg))


def reexec_argv(cfg: Config, inherited: Inherited) -> list[str]:
    """The command line of the lean supervisor, with its options (Options.to_argv)."""
    from waitfor.supervise.init import Options

    # A blocked signal stays pending across execve(2), so the supervisor takes and forwards
    # whatever arrived during the wait; except SIGPIPE and SIGXFSZ, which the new
    # interpreter sets to SIG_IGN before any of our code runs, and setting SIG_IGN discards
    # a pending signal even while it is blocked (sigaction(2), POSIX). Name those instead.
    # (One that arrives between this sigpending() and the execve is still lost: the window
    # is a few system calls long, and no Python flag keeps the interpreter from ignoring
    # them.) The in-process supervisor does not exec, so it needs none.
    pending = signals.pending() & signals.PYTHON_IGNORES
    o = Options.from_config(cfg, inherited, pending)
    if cfg.user is None:
        o.pdeathsig = 0  # set by reexec() already: it survives the execve
    opts = o.to_argv()
    if getattr(sys, "frozen", False):
        # A frozen bundle (packaging/): sys.executable is waitfor itself and takes no
        # interpreter flags; its hidden `_supervise` mode is the same lean entry.
        return [sys.executable, "_supervise", *opts]
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    boot = (
        f"import sys; sys.path.insert(0, {package_parent!r}); "
        "from waitfor.supervise.init import main; sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-I", "-S", "-c", boot, *opts]


def reexec(cfg: Config, inherited: Inherited) -> None:
    """Replace this process with the lean supervisor (signals still blocked)."""
    from waitfor import process

    if not is_pid1():
        process.become_subreaper()
        if cfg.pdeathsig and cfg.user is None:
            # PR_SET_PDEATHSIG survives execve(2) (of a binary that is not set-id), so it is
            # set here, with this interpreter's ctypes, and the lean supervisor needs none:
            # its idle RSS stays as it is. With --user the supervisor's own drop to the user
            # clears it (prctl(2)), so the supervisor sets it again after that drop.
            process.set_pdeathsig(cfg.pdeathsig, inherited.parent)
    argv = reexec_argv(cfg, inherited)
    os.execv(argv[0], argv)
