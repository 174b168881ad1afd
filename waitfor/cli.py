"""Command line: `waitfor [run|wait|check|health|validate|schema] [OPTIONS] [TARGET ...] [-- COMMAND ...]`.

main() reads like a recipe: capture the inherited signal state, parse, build the frozen
Config, then run the mode. Every user-facing error is a WaitforError, caught here and
printed as one line without a traceback (as pipx does), with its exit code.
"""

import os
import sys

from waitfor import __version__, exitcodes
from waitfor.errors import UsageError, WaitforError

MODES = {
    "run": "wait for every dependency, then run COMMAND (the default)",
    "wait": "wait for every dependency, then exit 0 (for init containers and scripts)",
    "check": "probe each dependency once, in parallel; exit 0 if all are ready, else 1",
    "health": "run the health checks once (Docker HEALTHCHECK, Kubernetes exec probes); exit 0 or 1",
    "validate": "check the config and print the effective configuration, secrets masked",
    "schema": "print the JSON Schema of the config file",
}

EPILOG = """\
targets: tcp://host:port or host:port, http(s)://..., unix:///path, file:///path,
  dns://name, postgres://, mysql://, redis://, amqp://, mqtt://, nats://, grpc://
environment: WAITFOR_CONFIG, WAITFOR_TIMEOUT, WAITFOR_TARGETS, WAITFOR_LOG_FORMAT
exit codes: the app's own; 124 not ready in time; 2 usage/config error;
  126 COMMAND not executable; 127 COMMAND not found; 128+N stopped by signal N;
  1 from check/health when not ready; 69 a watched dependency failed
"""


def _parser():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            # argparse prints its usage line first; an error here is one line, like the rest.
            raise UsageError(f"{message} (see waitfor --help)")

    p = Parser(
        prog="waitfor",
        usage="waitfor [run|wait|check|health|validate|schema] [OPTIONS] [TARGET ...] [-- COMMAND [ARG ...]]",
        description="Wait for a container's dependencies, then run the app as a proper PID 1.\n\nsubcommands:\n"
        + "\n".join(f"  {k:<9} {v}" for k, v in MODES.items()),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("targets", nargs="*", metavar="TARGET", help="a dependency URL (see targets below)")
    p.add_argument("--version", action="version", version=f"waitfor {__version__}")
    g = p.add_argument_group("waiting")
    g.add_argument("-c", "--config", metavar="FILE", help="YAML config file (env WAITFOR_CONFIG)")
    g.add_argument("-t", "--timeout", metavar="DURATION", help="overall deadline, 0 for none (default 60s; env WAITFOR_TIMEOUT)")
    g.add_argument("--interval", metavar="DURATION", help="first retry delay and the polling interval of closed ports (default 50ms)")
    g.add_argument("--max-interval", metavar="DURATION", help="longest retry delay of the backoff (default 1s)")
    g.add_argument("--attempt-timeout", metavar="DURATION", help="bound on one attempt (default 2s)")
    g = p.add_argument_group("output")
    g.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, help="only warnings and errors")
    g.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, help="also every change of reason")
    g.add_argument("--log-format", metavar="text|json", help="log line format (default text; env WAITFOR_LOG_FORMAT)")
    g = p.add_argument_group("supervision (run)")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--init", dest="supervise", action="store_const", const="init",
                   help="supervise COMMAND as a child even when not PID 1 (as a child subreaper)")
    m.add_argument("--exec", dest="supervise", action="store_const", const="exec",
                   help="replace waitfor with COMMAND even as PID 1")
    g.add_argument("--group", action="store_true", default=None, help="forward signals to the app's whole process group")
    g.add_argument("--rewrite", action="append", metavar="SIG:SIG", type=_rewrite,
                   help="forward signal X as Y (X:- drops X); repeatable, e.g. --rewrite TERM:QUIT")
    g.add_argument("--stop-timeout", metavar="DURATION", help="grace before SIGKILL for processes left behind (default 5s)")
    g.add_argument("--stop-signal", metavar="SIG", help="signal that stops the app when a watched dependency fails (default TERM)")
    g.add_argument("--success-exit", action="append", metavar="CODE", type=_exit_code,
                   help="treat the app's exit code CODE as 0; repeatable")
    g = p.add_argument_group("runtime watch and probes (run)")
    g.add_argument("--watch-interval", metavar="DURATION", help="keep probing every DURATION while the app runs")
    g.add_argument("--failure-threshold", metavar="N", help="failures in a row that stop the app (default 3)")
    g.add_argument("--probe-addr", metavar="HOST:PORT", help="serve /livez, /readyz and /startupz on HOST:PORT")
    return p


def _rewrite(text: str):
    import argparse

    from waitfor.signames import parse_signal

    src, sep, dst = text.partition(":")
    try:
        if not sep:
            raise ValueError("expected SIG:SIG, such as TERM:QUIT or WINCH:-")
        return parse_signal(src), 0 if dst.strip() == "-" else parse_signal(dst)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _exit_code(text: str) -> int:
    import argparse

    if not text.isdigit() or not 0 <= int(text) <= 255:
        raise argparse.ArgumentTypeError(f"expected an exit code 0-255, got {text!r}")
    return int(text)


def parse_args(argv):
    """Split at the first `--`: waitfor's own arguments before, COMMAND after."""
    if "--" in argv:
        i = argv.index("--")
        own, command = argv[:i], argv[i + 1:]
    else:
        own, command = argv, None
    mode = "run"
    if own and own[0] in MODES:
        mode, own = own[0], own[1:]
    parser = _parser()
    args = parser.parse_args(own)  # exits 2 with a one-line error on bad flags
    args.mode, args.command = mode, command
    if args.rewrite:
        args.rewrite = dict(args.rewrite)
    if mode == "run" and not command:
        parser.error("run needs a command: waitfor [OPTIONS] [TARGET ...] -- COMMAND [ARG ...]")
    if mode != "run":
        if command is not None:
            parser.error(f"{mode} takes no COMMAND (only run does)")
        for flag, key in (("--init", "supervise"), ("--group", "group"), ("--rewrite", "rewrite"),
                          ("--success-exit", "success_exit"), ("--probe-addr", "probe_addr"),
                          ("--watch-interval", "watch_interval")):
            if getattr(args, key):
                parser.error(f"{flag} applies only to run")
    return args


def main(argv=None) -> int:
    from waitfor import sigstate

    inherited = sigstate.capture()  # first: before anything changes the signal state
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] == "run" or argv[0] not in MODES:
        # Block every signal before the ~50 ms of argparse, YAML and config: as PID 1 the
        # kernel drops a TERM with no handler (a `docker stop` right after start would wait
        # out its grace), and outside PID 1 a USR1 would kill waitfor. exec_app restores the
        # inherited mask; the wait and the supervisor wait for what they need.
        import signal

        signal.pthread_sigmask(signal.SIG_BLOCK, sigstate.catchable())
    log_format = _early_log_format(argv, os.environ)
    try:
        args = parse_args(argv)
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

