"""Command line: `waitfor [run|wait|check|health|validate|schema] [OPTIONS] [TARGET ...] [-- COMMAND ...]`.

main() reads like a recipe: capture the inherited signal state, parse, build the frozen
Config, then run the mode. Every user-facing error is a WaitforError, caught here and
printed as one line without a traceback (as pipx does), with its exit code.
"""

import os
import sys

from waitfor import exitcodes
from waitfor.args import MODES
from waitfor.errors import UsageError, WaitforError



def main(argv=None) -> int:
    from waitfor import sigstate

    inherited = sigstate.capture()  # first: before anything changes the signal state
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_supervise"]:  # the re-exec of a frozen bundle (waitfor.handover)
        from waitfor.supervisor import main as supervise_main

        return supervise_main(argv[1:])
    if not argv or argv[0] == "run" or argv[0] not in MODES:
        # Block every signal before the ~50 ms of argparse, YAML and config: as PID 1 the
        # kernel drops a TERM with no handler (a `docker stop` right after start would wait
        # out its grace), and outside PID 1 a USR1 would kill waitfor. exec_app restores the
        # inherited mask; the wait and the supervisor wait for what they need.
        sigstate.block_all()
    log_format = _early_log_format(argv, os.environ)
    try:
        from waitfor import args as arguments

        args = arguments.parse(argv)
        if args.mode == "schema":
            from waitfor.schema import print_schema

            return print_schema()
        from waitfor import config

        cfg = config.build(args, os.environ)
        log_format = cfg.log_format
        return run_mode(cfg, inherited)
    except WaitforError as e:
        _print_error(log_format, f"error: {e}")
        code = e.exit_code
    except KeyboardInterrupt:
        code = exitcodes.from_signal(2)
    except Exception as e:  # noqa: BLE001 - a bug must still not show users a traceback
        _print_error(log_format, f"internal error: {type(e).__name__}: {e}")
        code = exitcodes.INTERNAL
    if code == exitcodes.USAGE and argv[:1] == ["health"]:
        # Docker reserves exit code 2 of a HEALTHCHECK: a broken config is "unhealthy".
        code = exitcodes.NOT_READY
    return code


def _early_log_format(argv, env) -> str:
    """The log format for errors raised before the Config exists (bad flags, bad YAML)."""
    own = argv[:argv.index("--")] if "--" in argv else argv
    for i, a in enumerate(own):
        if a == "--log-format" and i + 1 < len(own):
            return own[i + 1]
        if a.startswith("--log-format="):
            return a.split("=", 1)[1]
    return env.get("WAITFOR_LOG_FORMAT", "text")


def _print_error(log_format: str, message: str) -> None:
    if log_format == "json":
        import json
        import time

        line = json.dumps({"time": round(time.time(), 3), "level": "error", "msg": message})
    else:
        line = f"waitfor: {message}"
    print(line, file=sys.stderr)


def run_mode(cfg, inherited) -> int:
    from waitfor.log import Log

    log = Log(cfg.log_format, cfg.verbosity)
    if cfg.mode == "validate":
        from waitfor.effective import print_effective

        return print_effective(cfg)
    if cfg.mode in ("check", "health"):
        from waitfor.health import run_health

        if cfg.mode == "check":
            return run_health(cfg, log, checks=cfg.dependencies)
        return run_health(cfg, log, checks=cfg.checks, use_supervisor=True)
    if cfg.mode == "wait":
        return wait_phase(cfg, log)
    return run(cfg, inherited, log)


def wait_phase(cfg, log, observe=None) -> int:
    if not cfg.dependencies:
        return exitcodes.OK
    from waitfor import waiting

    try:
        results = waiting.wait_for(cfg, cfg.dependencies, log, observe=observe)
    except waiting.Stopped as s:
        return exitcodes.from_signal(s.signum)
    if all(o.state == "ready" for o in results):
        log.info("all dependencies ready" if len(results) > 1 else "the dependency is ready")
        return exitcodes.OK
    return waiting.summarize_failure(cfg, results, log)


def run(cfg, inherited, log) -> int:
    from waitfor import handover

    # Every signal is blocked since main(): those that arrive during the wait (other than
    # the ones that stop it) stay pending and are forwarded once the app runs.
    supervise = handover.supervises(cfg)
    if supervise:
        if cfg.watch_interval or cfg.probe_addr:
            from waitfor.runtime import run_watched

            return run_watched(cfg, inherited, log, wait_phase)
    code = wait_phase(cfg, log)
    if code != exitcodes.OK:
        return code
    if supervise:
        handover.supervise_app(cfg, inherited)
    handover.exec_app(cfg.command, inherited)
    raise UsageError("unreachable")  # exec_app either replaces this process or raises

