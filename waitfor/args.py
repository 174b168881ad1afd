"""argv -> a namespace of raw option values. The options and `--help` both come from the
SETTINGS table (waitfor.config.model); values are checked later, by waitfor.config, which
names the flag in its errors.

Not argparse: importing it costs about as much as Python's own start-up (it pulls in
shutil, gettext and locale; see BENCHMARKS.md), and `waitfor -- app` is budgeted at 1.5x
`python -c pass`. The grammar is small: options (`--opt VALUE`, `--opt=VALUE`, `-t VALUE`,
`-t5s`), flags, repeatable options, targets, and everything after the first `--` is COMMAND.
The subcommand comes first, or as the first word that is not an option's value.
"""

from __future__ import annotations

from types import SimpleNamespace

from waitfor import __version__
from waitfor.config.model import SETTINGS
from waitfor.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Flag, Setting

MODES = {
    "run": "wait for every dependency, then run COMMAND (the default)",
    "wait": "wait for every dependency, then exit 0 (for init containers and scripts)",
    "sidecar": "wait for every dependency, then keep watching them and serving /startupz /readyz /livez, "
               "without an app, until SIGTERM (exit 0)",
    "check": "probe each dependency once, in parallel; exit 0 if all are ready, else 1",
    "health": "run the health checks once (Docker HEALTHCHECK, Kubernetes exec probes); exit 0 or 1",
    "validate": "check the config and print the effective configuration, secrets masked",
    "schema": "print the JSON Schema of the config file",
}
MODE_USAGE = {
    "run": "waitfor [run] [OPTIONS] [TARGET ...] -- COMMAND [ARG ...]",
    "wait": "waitfor wait [OPTIONS] [TARGET ...]",
    "sidecar": "waitfor sidecar [OPTIONS] [TARGET ...]",
    "check": "waitfor check [OPTIONS] [TARGET ...]",
    "health": "waitfor health [OPTIONS] [TARGET ...]",
    "validate": "waitfor validate [OPTIONS] [TARGET ...]",
    "schema": "waitfor schema",
}
# Options that only some subcommands take, beyond the run-only ones of SETTINGS.
MODE_ONLY = {"offline": ("validate",)}
# The run-only settings that `sidecar` takes too: it has the watch and the probe endpoint
# of `run`, but no app (so no supervision, user or templates; secrets_env applies, as wherever
# probes run).
SIDECAR_TAKES = ("watch_interval", "probe_addr")

_BY_SPELLING: dict[str, tuple[Setting, Flag]] = {
    spelling: (s, f) for s in SETTINGS for f in s.flags for spelling in f.spellings
}
# Flags of subcommands, not settings: what they change is the command's own business.
EXTRA_FLAGS = {
    "--offline": ("offline", "validate", "check the config without drivers and secret files (for CI)"),
}

USAGE = "usage: waitfor [run|wait|sidecar|check|health|validate|schema] [OPTIONS] [TARGET ...] [-- COMMAND [ARG ...]]"
EPILOG = """\
targets: tcp://host:port or host:port, http(s)://..., unix:///path, file:///path,
  dns://name, postgres://, mysql://, redis://, amqp://, mqtt://, nats://, grpc://
exit codes: the app's own; 124 not ready in time; 2 usage/config error;
  126 COMMAND not executable; 127 COMMAND not found; 128+N stopped by signal N;
  1 from check/health when not ready; 69 a watched dependency failed; 70 internal error;
  71 a local resource limit (no thread, no fd) where waitfor cannot carry on"""


def _takes(mode: str, s: Setting) -> bool:
    return mode == "run" or not s.run_only or (mode == "sidecar" and s.key in SIDECAR_TAKES)


def help_text(mode: str | None = None) -> str:
    """The global help, or one subcommand's: its usage and only the options it takes."""
    if mode is None:
        lines = [USAGE, "", "Wait for a container's dependencies, then run the app as a proper PID 1.", "",
                 "subcommands:"]
        lines += [f"  {m:<9} {text}" for m, text in MODES.items()]
        lines += ["", "  waitfor SUBCOMMAND --help shows the options of one subcommand"]
    else:
        lines = [f"usage: {MODE_USAGE[mode]}", "", MODES[mode][0].upper() + MODES[mode][1:] + "."]
    lines += ["", "arguments:"]
    if mode != "schema":
        lines.append(f"  {'TARGET':<30} a dependency URL (see targets below)")
    lines += [f"  {'-h, --help':<30} show this help and exit", f"  {'--version':<30} show the version and exit",
              f"  {'--version --verbose':<30} also the interpreter, OpenSSL, packages and libraries"]
    if mode == "schema":
        return "\n".join(lines)
    group = None
    for s in SETTINGS:
        if mode is not None and not _takes(mode, s):
            continue
        if s.group != group:
            group = s.group
            lines += ["", f"{group}:"]
        for f in s.flags:
            spec = ", ".join(f.spellings) + (f" {f.metavar}" if f.metavar else "")
            text = f.help + (f" (env {s.env})" if s.env and f is s.flags[0] else "")
            lines.append(f"  {spec:<30} {text}" if len(spec) < 30 else f"  {spec}\n  {'':<30} {text}")
    extras = [(flag, text) for flag, (_k, m, text) in EXTRA_FLAGS.items() if mode in (None, m)]
    if extras:
        lines += ["", f"{mode or 'validate'}:"]
        lines += [f"  {flag:<30} {text}" for flag, text in extras]
    envs = ", ".join(s.env for s in SETTINGS if s.env)
    lines += ["", f"environment: {envs}, WAITFOR_TARGETS, WAITFOR_STATE_FILE"]
    return "\n".join([*lines, "", EPILOG])


def _fail(message: str, mode: str | None = None) -> UsageError:
    hint = f"waitfor {mode} --help" if mode and mode != "run" else "waitfor --help"
    return UsageError(f"{message} (see {hint})")


def _mistyped_mode(word: str) -> str | None:
    """The subcommand `word` is a typo of (`helth`, `chek`), or None. A target always holds
    a `:` (host:port, scheme://) and a word of letters is no target, so the word is a
    subcommand misspelt, not a host (issue 16 E21). difflib: only on this path."""
    if not word.isalpha() or not word.isascii():
        return None
    import difflib

    close = difflib.get_close_matches(word.lower(), MODES, n=1, cutoff=0.7)  # not cache -> check
    return close[0] if close else None


def parse(argv: list[str]) -> SimpleNamespace:
    """-> namespace(mode, command, targets, given, offline, and one attribute per setting)."""
    if "--" in argv:
        i = argv.index("--")
        own, command = argv[:i], list(argv[i + 1:])
    else:
        own, command = list(argv), None
    mode: str | None = None
    if own and own[0] in MODES:
        mode, own = own[0], own[1:]
    values: dict[str, object] = {s.key: None for s in SETTINGS}
    given: dict[str, str] = {}  # setting key -> the flag as typed, for errors
    extras: dict[str, bool] = {}
    targets: list[str] = []
    wants_help = False
    i = 0
    while i < len(own):
        tok = own[i]
        i += 1
        if tok in ("-h", "--help"):
            wants_help = True
            continue
        if tok == "--version":
            from waitfor.output import write_stdout

            if "--verbose" in own or "-v" in own:  # the components too: interpreter, OpenSSL, packages, libraries
                from waitfor.components import lines

                write_stdout("\n".join(lines(__version__)) + "\n")
            else:
                write_stdout(f"waitfor {__version__}\n")
            raise SystemExit(0)
        if not tok.startswith("-") or tok == "-":
            if mode is None and not targets and tok in MODES:
                mode = tok  # `waitfor -c deps.yaml validate`: a subcommand after the options
            elif mode is None and not targets and _mistyped_mode(tok):
                raise _fail(f"unknown subcommand {tok!r} (did you mean {_mistyped_mode(tok)}?)")
            else:
                targets.append(tok)
            continue
        if tok in EXTRA_FLAGS:
            extras[EXTRA_FLAGS[tok][0]] = True
            given[EXTRA_FLAGS[tok][0]] = tok
            continue
        i = _take_option(tok, own, i, mode, values, given)
    mode = mode or "run"
    if wants_help:
        from waitfor.output import write_stdout

        write_stdout(help_text(None if mode == "run" and argv[:1] != ["run"] else mode) + "\n")
        raise SystemExit(0)
    _check_fits(mode, targets, command, given)
    return SimpleNamespace(mode=mode, command=command, targets=targets, given=given,
                           offline=extras.get("offline", False), **values)


def _take_option(tok: str, own: list[str], i: int, mode: str | None,
                 values: dict[str, object], given: dict[str, str]) -> int:
    """One setting's flag `tok` (its value inline, attached or the next word own[i]) into
    `values` and `given`; -> the index of the next word."""
    if tok.startswith("--"):
        name, eq, inline = tok.partition("=")
    else:  # -t5s: a short option with its value attached
        name, inline = tok[:2], tok[2:]
        eq = "=" if inline else ""
    found = _BY_SPELLING.get(name)
    if found is None:
        raise _fail(f"unrecognized argument: {tok}", mode)
    s, f = found
    if s.key in given and given[s.key] != name and not f.append and not f.takes_value \
            and values[s.key] != f.const:
        raise _fail(f"{given[s.key]} and {name} exclude each other", mode)
    given[s.key] = name
    if f.takes_value:
        if eq:
            value = inline
        elif i < len(own):
            value, i = own[i], i + 1
        else:
            raise _fail(f"{name}: expected a value ({f.metavar})", mode)
        before = values[s.key]
        if f.append:
            values[s.key] = [*before, value] if isinstance(before, list) else [value]
        else:
            values[s.key] = value
        return i
    if eq:
        raise _fail(f"{name}: takes no value", mode)
    values[s.key] = f.const
    return i


def _check_fits(mode: str, targets: list[str], command: list[str] | None, given: dict[str, str]) -> None:
    """The subcommand, its targets, its COMMAND and the flags given fit together."""
    late = [t for t in targets if t in MODES]
    if late and (mode != "run" or not command):
        raise _fail(f"the subcommand goes before the targets: waitfor {late[0]} [OPTIONS] [TARGET ...]", mode)
    if mode == "run" and not command:
        raise _fail("run needs a command: waitfor [OPTIONS] [TARGET ...] -- COMMAND [ARG ...]", mode)
    if mode != "run" and command is not None:
        raise _fail(f"{mode} takes no COMMAND (only run does)", mode)
    for s in SETTINGS:
        if s.key in given and not _takes(mode, s):
            also = " and sidecar" if s.key in SIDECAR_TAKES else ""
            raise _fail(f"{given[s.key]} applies only to run{also}", mode)
    for key, typed in given.items():
        if key in MODE_ONLY and mode not in MODE_ONLY[key]:
            raise _fail(f"{typed} applies only to {' and '.join(MODE_ONLY[key])}", mode)
