"""Command line: `waitfor [run|wait|sidecar|check|health|validate|schema] [OPTIONS] [TARGET ...] [-- COMMAND ...]`.

main() reads like a recipe, as tini's does: capture the inherited signal state and block
every signal, parse, build the frozen Config, run the subcommand. It is the only place
where errors become exit codes: every user-facing error is a WaitforError, printed as one
line without a traceback (as pipx does), with its exit code.
"""

from __future__ import annotations

import os
import sys

from waitfor import exitcodes
from waitfor.errors import UsageErrors, WaitforError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from types import SimpleNamespace
    from typing import NoReturn

    from waitfor.config.model import Config
    from waitfor.signals import Inherited

SUPERVISE_ENTRY = "_supervise"  # the re-exec of a frozen bundle (waitfor.supervise.launch)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if getattr(sys, "frozen", False):
        unfreeze_environ(os.environ)
    if argv[:1] == [SUPERVISE_ENTRY]:
        from waitfor.supervise.init import main as supervise_main

        return supervise_main(argv[1:])
    from waitfor import signals
    from waitfor.output import StdoutClosed, ensure_std_fds

    inherited = signals.capture()  # first: before anything changes the signal state
    if not argv or argv[0] not in ("check", "health", "validate", "schema", "wait"):
        # Block every signal before the ~50 ms of parsing, YAML and config: as PID 1 the
        # kernel drops a TERM with no handler (a `docker stop` right after start would wait
        # out its grace), and outside PID 1 a USR1 would kill waitfor. exec_app restores the
        # inherited mask; the wait and the supervisor wait for what they need.
        signals.block_all()
    ensure_std_fds()
    log_format = _early_log_format(argv, os.environ)
    mode = argv[0] if argv else "run"
    try:
        from waitfor import args as arguments
        from waitfor import config

        args = arguments.parse(argv)
        mode = args.mode
        if mode == "schema":
            from waitfor.commands.schema import run_schema

            return run_schema()
        cfg = config.build(args, os.environ)
        log_format = cfg.log_format
        return dispatch(cfg, args, inherited)
    except StdoutClosed:
        return exitcodes.from_signal(13)  # as a filter killed by SIGPIPE would (`| head -1`)
    except WaitforError as e:
        for message in str(e).split("\n") if isinstance(e, UsageErrors) else [str(e)]:
            _print_error(log_format, f"error: {message}")
        code = e.exit_code
    except KeyboardInterrupt:
        code = exitcodes.from_signal(2)
    except RecursionError:
        _print_error(log_format, "error: the config is nested too deeply")
        code = exitcodes.USAGE
    except Exception as e:  # noqa: BLE001 - a bug must still not show users a traceback
        code = _unexpected(log_format, e)
    if code == exitcodes.USAGE and mode == "health":
        # Docker reserves exit code 2 of a HEALTHCHECK: a broken config is "unhealthy".
        code = exitcodes.NOT_READY
    return code


def _unexpected(log_format: str, e: Exception) -> int:
    """An exception no layer answered, in one line: a local resource limit where waitfor
    cannot carry on (the scheduler's or the --probe-addr server's thread, fds) is the
    system's limit, said as one with exit 71 (issue 16 D15); anything else is a bug, 70."""
    from waitfor.probes.limits import local_limit

    limit = local_limit(e) if isinstance(e, (OSError, RuntimeError)) else None  # not a bug's context
    if limit is not None:
        _print_error(log_format, f"error: {limit}")
        return exitcodes.OS_LIMIT
    _print_error(log_format, f"internal error: {type(e).__name__}: {e}")
    return exitcodes.INTERNAL


def exit_process(code: int) -> NoReturn:
    """Leave the process with `code` (bin/waitfor and `python -m waitfor` end here).

    When a thread of the wait still runs (a pool thread in a driver's attempt, cut off by
    the overall deadline), skip the interpreter's finalization: a daemon thread in a
    driver's C code while the interpreter shuts down can crash it (seen here: SIGSEGV
    instead of exit 124 after "gave up", with PyMySQL, about one CI run in ten). The one
    thing finalization would do for waitfor, flush stdout and stderr, is done first."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed, or a reader that left: nothing to keep
                pass
        os._exit(code)
    sys.exit(code)


def unfreeze_environ(environ: MutableMapping[str, str]) -> None:
    """Give the app the environment waitfor was started with, not the bundle's.

    PyInstaller's bootloader prepends the bundle's library folder to LD_LIBRARY_PATH (the
    old value saved in LD_LIBRARY_PATH_ORIG) and sets _PYI_* variables for itself
    (pyinstaller.org, "Runtime information: LD_LIBRARY_PATH / LIBPATH considerations").
    Inherited by COMMAND, the first would make the app load the bundle's libssl or libz
    instead of its image's own. The loader read LD_LIBRARY_PATH when this process started,
    so changing it here no longer matters to waitfor itself; the lean supervisor's re-exec
    of the bundle gets the bootloader's settings anew, and undoes them here again."""
    orig = environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if orig is not None:
        environ["LD_LIBRARY_PATH"] = orig
    else:
        environ.pop("LD_LIBRARY_PATH", None)
    for key in [k for k in environ if k.startswith("_PYI_") or k == "_MEIPASS2"]:
        del environ[key]


def dispatch(cfg: Config, args: SimpleNamespace, inherited: Inherited) -> int:
    from waitfor.output import Log, mask

    log = Log(cfg.log_format, cfg.verbosity)
    # Every secret the config holds (URL passwords, header values, password files) is
    # masked in every text that leaves waitfor from now on, whichever dependency it
    # belongs to (issue 16 B4); secrets_env's values join them when they are read.
    mask(cfg.secrets)
    if cfg.secrets_env and cfg.mode not in ("run", "validate"):
        # The setting applies wherever probes run (issue 16 B7): a command dependency that
        # needs $DB_PASSWORD passes under wait, check, health and sidecar as it does under
        # run (run and validate read the secrets themselves, where they need them).
        from waitfor.commands.run import load_secrets

        load_secrets(cfg)
    if cfg.mode == "validate":
        from waitfor.commands.validate import run_validate

        return run_validate(cfg, offline=bool(getattr(args, "offline", False)))
    if cfg.mode in ("check", "health"):
        from waitfor.commands.check import run_health

        if cfg.user is not None and os.geteuid() == 0:
            # A HEALTHCHECK runs as the container's user, root when waitfor switches: the
            # config's `user:` runs the command checks here too (waitfor.process's rule).
            from waitfor.supervise.launch import run_children_as_user

            run_children_as_user(cfg)

        if cfg.mode == "check":
            return run_health(cfg, log, checks=cfg.dependencies)
        # Targets on the command line are always probed: the supervisor's view answers only
        # for its own checks (issue 10 A2), and `health db:5432` asks about db:5432.
        return run_health(cfg, log, checks=cfg.checks, use_supervisor=not getattr(args, "targets", None))
    from waitfor.commands import run

    if cfg.mode == "wait":
        return run.run_wait(cfg, log)
    if cfg.mode == "sidecar":
        from waitfor.commands.sidecar import run_sidecar

        return run_sidecar(cfg, log, given=getattr(args, "given", {}))
    return run.run(cfg, inherited, log)


def _early_log_format(argv: list[str], env: os._Environ[str] | dict[str, str]) -> str:
    """The log format for errors raised before the Config exists (bad flags, bad YAML)."""
    own = argv[:argv.index("--")] if "--" in argv else argv
    for i, a in enumerate(own):
        if a == "--log-format" and i + 1 < len(own):
            return own[i + 1]
        if a.startswith("--log-format="):
            return a.split("=", 1)[1]
    return env.get("WAITFOR_LOG_FORMAT", "text")


def _print_error(log_format: str, message: str) -> None:
    from waitfor.output import Log

    Log(log_format).error(message)
