"""argv -> a namespace of raw option values, from one declarative table that also writes
`--help`.

Not argparse: importing it costs about as much as Python's own start-up (it pulls in
shutil, gettext and locale; see BENCHMARKS.md), and `waitfor -- app` is budgeted at 1.5x
`python -c pass`. The grammar is small: options (`--opt VALUE`, `--opt=VALUE`, `-t VALUE`,
`-t5s`), flags, repeatable options, targets, and everything after the first `--` is COMMAND.
Values are checked later by waitfor.config, which names the flag in its errors.
"""

from types import SimpleNamespace

from waitfor import __version__
from waitfor.errors import UsageError

MODES = {
    "run": "wait for every dependency, then run COMMAND (the default)",
    "wait": "wait for every dependency, then exit 0 (for init containers and scripts)",
    "check": "probe each dependency once, in parallel; exit 0 if all are ready, else 1",
    "health": "run the health checks once (Docker HEALTHCHECK, Kubernetes exec probes); exit 0 or 1",
    "validate": "check the config and print the effective configuration, secrets masked",
    "schema": "print the JSON Schema of the config file",
}

# kind: "value" (takes an argument), "append" (repeatable, takes one), or a constant that
# the flag stores. Only run uses the options of the last two groups.
VALUE, APPEND = "value", "append"
OPTIONS = (
    ("waiting", ("-c", "--config"), "config", VALUE, "FILE", "YAML config file (env WAITFOR_CONFIG)"),
    ("waiting", ("-t", "--timeout"), "timeout", VALUE, "DURATION",
     "overall deadline, 0 for none (default 60s; env WAITFOR_TIMEOUT)"),
    ("waiting", ("--interval",), "interval", VALUE, "DURATION",
     "first retry delay and the polling interval of closed ports (default 50ms)"),
    ("waiting", ("--max-interval",), "max_interval", VALUE, "DURATION", "longest retry delay (default 1s)"),
    ("waiting", ("--attempt-timeout",), "attempt_timeout", VALUE, "DURATION", "bound on one attempt (default 2s)"),
    ("output", ("-q", "--quiet"), "verbosity", -1, None, "only warnings and errors"),
    ("output", ("-v", "--verbose"), "verbosity", 1, None, "also every change of reason"),
    ("output", ("--log-format",), "log_format", VALUE, "text|json",
     "log line format (default text; env WAITFOR_LOG_FORMAT)"),
    ("supervision (run)", ("--init",), "supervise", "init", None,
     "supervise COMMAND as a child even when not PID 1 (as a child subreaper)"),
    ("supervision (run)", ("--exec",), "supervise", "exec", None, "replace waitfor with COMMAND even as PID 1"),
    ("supervision (run)", ("--group",), "group", True, None, "forward signals to the app's whole process group"),
    ("supervision (run)", ("--rewrite",), "rewrite", APPEND, "SIG:SIG",
     "forward signal X as Y (X:- drops X); repeatable, e.g. --rewrite TERM:QUIT"),
    ("supervision (run)", ("--stop-timeout",), "stop_timeout", VALUE, "DURATION",
     "grace before SIGKILL for processes left behind (default 5s)"),
    ("supervision (run)", ("--stop-signal",), "stop_signal", VALUE, "SIG",
     "signal that stops the app when a watched dependency fails (default TERM)"),
    ("supervision (run)", ("--success-exit",), "success_exit", APPEND, "CODE",
     "treat the app's exit code CODE as 0; repeatable"),
    ("runtime watch and probes (run)", ("--watch-interval",), "watch_interval", VALUE, "DURATION",
     "keep probing every DURATION while the app runs"),
    ("runtime watch and probes (run)", ("--failure-threshold",), "failure_threshold", VALUE, "N",
     "failures in a row that stop the app (default 3)"),
    ("runtime watch and probes (run)", ("--probe-addr",), "probe_addr", VALUE, "HOST:PORT",
     "serve /livez, /readyz and /startupz on HOST:PORT"),
)
RUN_ONLY = ("supervise", "group", "rewrite", "success_exit", "stop_timeout", "stop_signal",
            "probe_addr", "watch_interval", "failure_threshold")
_BY_FLAG = {flag: opt for opt in OPTIONS for flag in opt[1]}

USAGE = "usage: waitfor [run|wait|check|health|validate|schema] [OPTIONS] [TARGET ...] [-- COMMAND [ARG ...]]"
EPILOG = """\
targets: tcp://host:port or host:port, http(s)://..., unix:///path, file:///path,
  dns://name, postgres://, mysql://, redis://, amqp://, mqtt://, nats://, grpc://
environment: WAITFOR_CONFIG, WAITFOR_TIMEOUT, WAITFOR_TARGETS, WAITFOR_LOG_FORMAT,
  WAITFOR_STATE_FILE
exit codes: the app's own; 124 not ready in time; 2 usage/config error;
  126 COMMAND not executable; 127 COMMAND not found; 128+N stopped by signal N;
  1 from check/health when not ready; 69 a watched dependency failed; 70 internal error"""


def help_text() -> str:
    lines = [USAGE, "", "Wait for a container's dependencies, then run the app as a proper PID 1.", "",
             "subcommands:"]
    lines += [f"  {mode:<9} {text}" for mode, text in MODES.items()]
    lines += ["", "arguments:", f"  {'TARGET':<30} a dependency URL (see targets below)",
              f"  {'-h, --help':<30} show this help and exit", f"  {'--version':<30} show the version and exit"]
    group = None
    for grp, flags, _dest, _kind, metavar, text in OPTIONS:
        if grp != group:
            group = grp
            lines += ["", f"{grp}:"]
        spec = ", ".join(flags) + (f" {metavar}" if metavar else "")
        lines.append(f"  {spec:<30} {text}" if len(spec) < 30 else f"  {spec}\n  {'':<30} {text}")
    return "\n".join(lines + ["", EPILOG])


def _fail(message: str):
    raise UsageError(f"{message} (see waitfor --help)")


def parse(argv) -> SimpleNamespace:
    """-> namespace(mode, command, targets, and one attribute per option's dest)."""
    if "--" in argv:
        i = argv.index("--")
        own, command = argv[:i], list(argv[i + 1:])
    else:
        own, command = list(argv), None
    mode = "run"
    if own and own[0] in MODES:
        mode, own = own[0], own[1:]
    values = {opt[2]: None for opt in OPTIONS}
    given = {}  # dest -> the flag as typed, for errors
    targets = []
    i = 0
    while i < len(own):
        tok = own[i]
        i += 1
        if tok in ("-h", "--help"):
            print(help_text())
            raise SystemExit(0)
        if tok == "--version":
            print(f"waitfor {__version__}")
            raise SystemExit(0)
        if not tok.startswith("-") or tok == "-":
            targets.append(tok)
            continue
        if tok.startswith("--"):
            name, eq, inline = tok.partition("=")
        else:  # -t5s: a short option with its value attached
            name, inline = tok[:2], tok[2:]
            eq = "=" if inline else ""
        opt = _BY_FLAG.get(name)
        if opt is None:
            _fail(f"unrecognized argument: {tok}")
        _group, _flags, dest, kind, metavar, _text = opt
        given[dest] = name
        if kind in (VALUE, APPEND):
            if eq:
                value = inline
            elif i < len(own):
                value, i = own[i], i + 1
            else:
                _fail(f"{name}: expected a value ({metavar})")
            if kind == APPEND:
                values[dest] = (values[dest] or []) + [value]
            else:
                values[dest] = value
            continue
        if eq:
            _fail(f"{name}: takes no value")
        if dest == "supervise" and values[dest] not in (None, kind):
            _fail("--init and --exec exclude each other")
        values[dest] = kind
    if mode == "run" and not command:
        _fail("run needs a command: waitfor [OPTIONS] [TARGET ...] -- COMMAND [ARG ...]")
    if mode != "run":
        if command is not None:
            _fail(f"{mode} takes no COMMAND (only run does)")
        for dest in RUN_ONLY:
            if dest in given:
                _fail(f"{given[dest]} applies only to run")
    return SimpleNamespace(mode=mode, command=command, targets=targets, **values)
