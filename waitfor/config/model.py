"""What the config is: the frozen records (Config, Dependency) and the one SETTINGS table.

Each row of SETTINGS declares a setting once: its key, flags, environment variable, YAML
key, validator, default, and whether only `run` takes it or it needs supervision. From the
table come the `--help` text (waitfor.args), the merge of the sources (waitfor.config),
the JSON Schema and `validate`'s output (waitfor.commands), and the supervisor's options
(waitfor.supervise.init.Options.from_config). Adding a flag is one row here and the code
that uses its value. (As pre-commit's clientlib declares its config once.)

Records are tuples with named fields (waitfor.tricks.Record: collections.namedtuple's
behaviour without its import on the start-up path of `waitfor -- app`).
"""

from __future__ import annotations

from waitfor.config import users
from waitfor.config import validators as v
from waitfor.config.validators import MappingProxyType
from waitfor.tricks import Record

TYPE_CHECKING = False  # typing's own import costs start-up time; mypy: always_true
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any


# --------------------------------------------------------------------------- records

_DEPENDENCY_FIELDS = (
    "name",     # how logs and after: refer to it
    "kind",     # a key of waitfor.probes.table.KINDS
    "url",      # the URL as given (interpolated); "" for command dependencies
    "argv",     # command dependencies only: (program, arg, ...)
    "options",  # the kind's own options, parsed (a read-only mapping)
    "timeout",  # this dependency's own deadline in seconds; None: only the overall one
    "after",    # names that must be ready first
    "invert",   # ready when the check fails
    "secrets",  # strings masked in every message about it
    "where",    # where it was defined, for error messages
    "named",    # True when the name was given with name:, not made from the target
)


class Dependency(Record, fields=_DEPENDENCY_FIELDS,
                 defaults=((), MappingProxyType({}), None, (), False, frozenset(), "", False)):
    """One thing to wait for."""

    __slots__ = ()
    if TYPE_CHECKING:  # the fields' types, for mypy (tests/test_architecture.py keeps them in step)
        name: str
        kind: str
        url: str
        argv: tuple[str, ...]
        options: Mapping[str, Any]
        timeout: float | None
        after: tuple[str, ...]
        invert: bool
        secrets: frozenset[str]
        where: str
        named: bool

        def __new__(cls, name: str, kind: str, url: str = "", argv: tuple[str, ...] = (),
                    options: Mapping[str, Any] = ..., timeout: float | None = None, after: tuple[str, ...] = (),
                    invert: bool = False, secrets: frozenset[str] = frozenset(), where: str = "",
                    named: bool = False) -> Dependency: ...

        def _replace(self, **kw: Any) -> Dependency: ...

    @property
    def display(self) -> str:
        """The target, safe to print."""
        from waitfor.secrets import mask_url, mask_urls_in

        if self.kind == "command":
            return "command: " + mask_urls_in(" ".join(self.argv))
        return mask_url(self.url)


# The dependency states, the one vocabulary of the engine, the logs and the state file.
WAITING, READY, FAILED = "waiting", "ready", "failed"


# --------------------------------------------------------------------------- settings


class Flag:
    """One spelling group of a command-line option: `-t, --timeout DURATION`."""

    __slots__ = ("append", "const", "help", "metavar", "spellings")

    def __init__(self, spellings: tuple[str, ...], help: str, metavar: str | None = None,
                 const: object = None, append: bool = False) -> None:
        self.spellings, self.help, self.metavar = spellings, help, metavar
        self.const, self.append = const, append

    @property
    def takes_value(self) -> bool:
        return self.const is None


class Setting:
    """One row of SETTINGS."""

    __slots__ = (
        "default",
        "env",
        "flags",
        "group",
        "key",
        "needs_supervision",
        "parse",
        "run_only",
        "schema",
        "show",
        "yaml",
    )

    def __init__(self, key: str, group: str, *, flags: tuple[Flag, ...] = (), env: str | None = None,
                 yaml: str | None = None, parse: Callable[[object], object] = v.string,
                 default: object = None, show: Callable[[object], object] | None = None,
                 run_only: bool = False, needs_supervision: bool = False,
                 schema: Mapping[str, object] | None = None) -> None:
        self.key, self.group, self.flags, self.env, self.yaml = key, group, flags, env, yaml
        self.parse, self.default, self.show = parse, default, show
        self.run_only, self.needs_supervision = run_only, needs_supervision
        self.schema = schema if schema is not None else parse.schema if isinstance(parse, v.Validator) else {}

    @property
    def flag(self) -> str:
        """The long spelling, for errors and messages."""
        return self.flags[0].spellings[-1] if self.flags else (self.env or self.key)


def _show_duration(seconds: object) -> object:
    from waitfor.config.durations import format_duration

    return format_duration(seconds) if isinstance(seconds, (int, float)) else "none"


def _show_signal(n: object) -> object:
    from waitfor.signals import signal_name

    return signal_name(n) if isinstance(n, int) else n


def _show_addr(addr: object) -> object:
    if not isinstance(addr, tuple):
        return addr
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


WAITING_GROUP, OUTPUT, SUPERVISION, RUNTIME = (
    "waiting", "output", "supervision (run)", "runtime watch and probes (run, sidecar)")

SETTINGS: tuple[Setting, ...] = (
    Setting("config", WAITING_GROUP, env="WAITFOR_CONFIG", flags=(
        Flag(("-c", "--config"), "YAML config file", "FILE"),)),
    Setting("timeout", WAITING_GROUP, env="WAITFOR_TIMEOUT", yaml="timeout", parse=v.deadline, default=60.0,
            show=_show_duration, flags=(
                Flag(("-t", "--timeout"), "overall deadline, 0 for none (default 60s)", "DURATION"),)),
    Setting("interval", WAITING_GROUP, yaml="interval", parse=v.positive_duration, default=0.05,
            show=_show_duration, flags=(
                Flag(("--interval",), "first retry delay, and the polling interval of closed ports during --fast-window (default 50ms)",
                     "DURATION"),)),
    Setting("max_interval", WAITING_GROUP, yaml="max_interval", parse=v.positive_duration, default=1.0,
            show=_show_duration, flags=(
                Flag(("--max-interval",), "longest retry delay, and the period of every retry after "
                     "--fast-window (default 1s)", "DURATION"),)),
    Setting("fast_window", WAITING_GROUP, env="WAITFOR_FAST_WINDOW", yaml="fast_window", parse=v.duration,
            default=2.0, show=_show_duration, flags=(
                Flag(("--fast-window",), "poll each dependency every --interval for this long, then once per "
                     "--max-interval at a random phase (default 2s)", "DURATION"),)),
    Setting("attempt_timeout", WAITING_GROUP, yaml="attempt_timeout", parse=v.positive_duration, default=2.0,
            show=_show_duration, flags=(
                Flag(("--attempt-timeout",), "bound on one attempt (default 2s)", "DURATION"),)),
    Setting("secrets_env", WAITING_GROUP, env="WAITFOR_SECRETS_ENV", yaml="secrets_env", parse=v.secrets_env,
            default=False, show=lambda x: list(x) if isinstance(x, tuple) else x, flags=(
                Flag(("--secrets-env",), "give the app NAME with the content of the file in NAME_FILE, "
                     "for each NAME_FILE whose file is in a secrets folder (as the official images' file_env)",
                     const=True),)),
    Setting("secrets_dirs", WAITING_GROUP, env="WAITFOR_SECRETS_DIRS", yaml="secrets_dirs", parse=v.secrets_dirs,
            default=v.SECRETS_DIRS, show=lambda x: list(x) if isinstance(x, tuple) else x,
            flags=(
                Flag(("--secrets-dir",), "a folder whose NAME_FILE files secrets_env true takes; repeatable "
                     "(default /run/secrets)", "DIR", append=True),)),
    Setting("verbosity", OUTPUT, parse=v.whole_number, default=0, flags=(
        Flag(("-q", "--quiet"), "only warnings and errors", const=-1),
        Flag(("-v", "--verbose"), "also every change of reason", const=1))),
    Setting("log_format", OUTPUT, env="WAITFOR_LOG_FORMAT", yaml="log_format", parse=v.log_format, default="text",
            flags=(Flag(("--log-format",), "log line format (default text)", "text|json"),)),
    Setting("supervise", SUPERVISION, parse=str, default="auto", run_only=True, flags=(
        Flag(("--init",), "supervise COMMAND as a child even when not PID 1 (as a child subreaper)", const="init"),
        Flag(("--exec",), "replace waitfor with COMMAND even as PID 1", const="exec"))),
    Setting("group", SUPERVISION, parse=bool, default=False, run_only=True, needs_supervision=True, flags=(
        Flag(("--group",), "forward signals to the app's whole process group", const=True),)),
    Setting("rewrite", SUPERVISION, parse=v.rewrites, default=MappingProxyType({}), run_only=True,
            needs_supervision=True, flags=(
                Flag(("--rewrite",), "forward signal X as Y (X:- drops X); repeatable, e.g. --rewrite TERM:QUIT",
                     "SIG:SIG", append=True),)),
    Setting("stop_timeout", SUPERVISION, yaml="stop_timeout", parse=v.duration, default=5.0, run_only=True,
            show=_show_duration, flags=(
                Flag(("--stop-timeout",), "grace before SIGKILL for processes left behind (default 5s)",
                     "DURATION"),)),
    Setting("stop_signal", SUPERVISION, yaml="stop_signal", parse=v.signal, default=15, run_only=True,
            show=_show_signal, flags=(
                Flag(("--stop-signal",), "signal that stops the app when a watched dependency fails (default TERM)",
                     "SIG"),)),
    Setting("leftovers", SUPERVISION, yaml="leftovers", parse=v.leftovers, default="kill", run_only=True, flags=(
        Flag(("--leftovers",), "processes left after the app exits: kill (TERM, then KILL after --stop-timeout; "
             "the default), term (one TERM, then exit at once) or keep (exit at once)", "kill|term|keep"),)),
    Setting("pdeathsig", SUPERVISION, yaml="pdeathsig", parse=v.optional_signal, default=0, run_only=True,
            show=lambda n: _show_signal(n) if n else "none", flags=(
                Flag(("--pdeathsig",), "when waitfor's parent dies, get SIG and pass it on to the app "
                     "(not as PID 1; like tini -p)", "SIG"),)),
    Setting("success_exit", SUPERVISION, parse=v.exit_codes, default=frozenset(), run_only=True,
            needs_supervision=True, show=v.sorted_list, flags=(
                Flag(("--success-exit",), "treat the app's exit code CODE as 0; repeatable", "CODE",
                     append=True),)),
    Setting("user", SUPERVISION, env="WAITFOR_USER", yaml="user", parse=users.user, default=None, run_only=True,
            show=users.show_user, flags=(
                Flag(("--user",), "run the app as USER (name or uid), with GROUP if given (like gosu)",
                     "USER[:GROUP]"),)),
    Setting("templates", SUPERVISION, yaml="templates", parse=v.templates, default=(), run_only=True,
            show=v.show_templates, flags=(
                Flag(("--template",), "render SRC to DEST with ${VAR} from the environment before the app starts; "
                     "repeatable", "SRC:DEST", append=True),)),
    Setting("watch_interval", RUNTIME, yaml="watch.interval", parse=v.deadline, default=None, run_only=True,
            needs_supervision=True, show=_show_duration, flags=(
                Flag(("--watch-interval",), "keep probing every DURATION while the app runs (0: no watch; "
                     "sidecar: default 5s)",
                     "DURATION"),)),
    Setting("failure_threshold", RUNTIME, yaml="watch.failure_threshold", parse=v.positive_int, default=3,
            run_only=True, flags=(
                Flag(("--failure-threshold",), "failures in a row that stop the app (default 3; run only)", "N"),)),
    Setting("probe_addr", RUNTIME, yaml="probe_addr", parse=v.listen_addr, default=None, run_only=True,
            needs_supervision=True, show=_show_addr, flags=(
                Flag(("--probe-addr",), "serve /livez, /readyz and /startupz on HOST:PORT", "HOST:PORT"),)),
)
BY_KEY: Mapping[str, Setting] = MappingProxyType({s.key: s for s in SETTINGS})

# The watch turned on by a `watch:` mapping that names no interval.
DEFAULT_WATCH_INTERVAL = 5.0

# Top-level YAML keys: the settings', plus the two lists of dependencies.
LIST_KEYS = ("dependencies", "health")
TOP_KEYS = tuple(dict.fromkeys([s.yaml.split(".")[0] for s in SETTINGS if s.yaml] + list(LIST_KEYS)))
# Keys every dependency may have, whatever its kind.
COMMON_KEYS = ("name", "url", "command", "timeout", "after", "invert")


_CONFIG_FIELDS = (
    "mode",              # run | wait | sidecar | check | health | validate
    "command",           # COMMAND and its arguments (run)
    "dependencies",      # (Dependency, ...)
    "health",            # (Dependency, ...); None: health checks the dependencies
    *(s.key if s.key != "config" else "config_file" for s in SETTINGS),
)


class Config(Record, fields=_CONFIG_FIELDS, defaults=((), (), None, *(s.default for s in SETTINGS))):
    """Everything waitfor was told, merged from argv, env and YAML."""

    __slots__ = ()
    if TYPE_CHECKING:  # the fields' types, for mypy (tests/test_architecture.py keeps them in step)
        mode: str
        command: tuple[str, ...]
        dependencies: tuple[Dependency, ...]
        health: tuple[Dependency, ...] | None
        config_file: str | None
        timeout: float | None
        interval: float
        max_interval: float
        fast_window: float
        attempt_timeout: float
        secrets_env: bool | tuple[str, ...]
        secrets_dirs: tuple[str, ...]
        verbosity: int
        log_format: str
        supervise: str
        group: bool
        rewrite: Mapping[int, int]
        stop_timeout: float
        stop_signal: int
        leftovers: str
        pdeathsig: int
        success_exit: frozenset[int]
        user: tuple[str, int, int, tuple[int, ...], str] | None
        templates: tuple[tuple[str, str, int | None], ...]
        watch_interval: float | None
        failure_threshold: int
        probe_addr: tuple[str, int] | None

        def __new__(cls, mode: str, **kw: Any) -> Config: ...

        def _replace(self, **kw: Any) -> Config: ...

    @property
    def checks(self) -> tuple[Dependency, ...]:
        """What `waitfor health` and the runtime watch check."""
        return self.dependencies if self.health is None else self.health

    @property
    def secrets(self) -> frozenset[str]:
        """Every secret string of every dependency: masked in whatever prints the config."""
        found: set[str] = set()
        for d in self.dependencies + (self.health or ()):
            found |= d.secrets
        return frozenset(found)
