"""argv, the environment and the YAML file become one frozen `Config`.

Precedence, for each setting: command line > environment > config file > default.
Dependencies are additive: those of the config file, then `WAITFOR_TARGETS`, then the
command line's targets. Every error names where it is: `file:line: key`, a flag, or an
environment variable, and is raised as UsageError (exit 2, nothing started).
"""

from collections import namedtuple
from types import MappingProxyType

from waitfor import validators as v
from waitfor.errors import UsageError, at
# urllib.parse, re (masking, interpolation) and the probe table are imported where they
# are needed: `waitfor -- app` with no dependencies needs none of them.

DEFAULTS = {  # in parsed form: seconds, signal numbers
    "timeout": 60.0,
    "interval": 0.05,
    "max_interval": 1.0,
    "attempt_timeout": 2.0,
    "stop_timeout": 5.0,
    "stop_signal": 15,  # SIGTERM (as a number: naming it would import `signal`'s enums)
    "log_format": "text",
    "watch_interval": 5.0,
    "failure_threshold": 3,
}

# Keys every dependency may have, whatever its kind.
COMMON_KEYS = ("name", "url", "command", "timeout", "after", "invert")
TOP_KEYS = (
    "timeout", "interval", "max_interval", "attempt_timeout", "stop_timeout", "stop_signal",
    "log_format", "probe_addr", "watch", "dependencies", "health",
)
WATCH_KEYS = ("interval", "failure_threshold")


# Immutable records: collections.namedtuple, not typing.NamedTuple or dataclasses, whose
# imports cost 3 to 5 ms each; `waitfor -- app` is budgeted at 1.5x `python -c pass`.
_DEPENDENCY = namedtuple("Dependency", [
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
], defaults=((), MappingProxyType({}), None, (), False, frozenset(), "", False))


class Dependency(_DEPENDENCY):
    """One thing to wait for."""

    __slots__ = ()

    @property
    def display(self) -> str:
        """The target, safe to print."""
        from waitfor.masking import mask_url, mask_urls_in

        if self.kind == "command":
            return "command: " + mask_urls_in(" ".join(self.argv))
        return mask_url(self.url)


_CONFIG = namedtuple("Config", [
    "mode",              # run | wait | check | health | validate
    "command",           # COMMAND and its arguments (run)
    "config_file",       # the YAML file, or None
    "timeout",           # overall deadline in seconds; None: no limit
    "interval", "max_interval", "attempt_timeout",  # seconds
    "dependencies",      # (Dependency, ...)
    "health",            # (Dependency, ...); None: health checks the dependencies
    "log_format",        # text | json
    "verbosity",         # -1 quiet, 0 normal, 1 verbose
    "supervise",         # auto | init | exec
    "group",             # forward signals to the app's process group
    "rewrite",           # {signum: signum}, 0 drops
    "stop_timeout",      # seconds
    "stop_signal",       # signum
    "success_exit",      # frozenset of exit codes mapped to 0
    "watch_interval",    # seconds; None: no runtime watch
    "failure_threshold",
    "probe_addr",        # (host, port) or None
], defaults=(
    (), None, DEFAULTS["timeout"], DEFAULTS["interval"], DEFAULTS["max_interval"],
    DEFAULTS["attempt_timeout"], (), None, "text", 0, "auto", False, MappingProxyType({}),
    DEFAULTS["stop_timeout"], 15, frozenset(), None, DEFAULTS["failure_threshold"], None,
))


class Config(_CONFIG):
    """Everything waitfor was told, merged from argv, env and YAML."""

    __slots__ = ()

    @property
    def checks(self) -> tuple:
        """What `waitfor health` and the runtime watch check."""
        return self.dependencies if self.health is None else self.health


# --------------------------------------------------------------------------- sources


def _file_where(path, doc, key):
    if doc is None:
        return path
    line = doc.lines.get(key, doc.line) if hasattr(doc, "lines") else 0
    return f"{path}:{line}: {key}" if line else f"{path}: {key}"


def _pick(key, cli, env, envname, doc, path, parse, flag: str):
    """The first of CLI, env, file, default that is set, parsed, with errors located."""
    if cli.get(key) is not None:
        where, raw = flag, cli[key]
    elif envname and env.get(envname) not in (None, ""):
        where, raw = envname, env[envname]
    elif doc is not None and key in doc:
        where, raw = _file_where(path, doc, key), doc[key]
    else:
        return DEFAULTS.get(key)  # already in parsed form
    try:
        return parse(raw)
    except ValueError as e:
        raise at(where, str(e)) from None


# --------------------------------------------------------------------------- interpolation


def _interpolate_doc(node, env, path, line=0, key=""):
    """Interpolate every string value in the YAML document, keeping line numbers.
    An error names `file:line: key`, such as `deps.yaml:4: dependencies[0].url`."""
    from waitfor.yamlfile import LDict, LList

    if isinstance(node, LDict):
        out = LDict()
        out.line, out.lines = node.line, node.lines
        for k, val in node.items():
            out[k] = _interpolate_doc(val, env, path, node.lines.get(k, node.line), f"{key}.{k}" if key else k)
        return out
    if isinstance(node, LList):
        out = LList(_interpolate_doc(val, env, path, ln, f"{key}[{i}]")
                    for i, (val, ln) in enumerate(zip(node, node.lines)))
        out.line, out.lines = node.line, node.lines
        return out
    if isinstance(node, str):
        from waitfor.interpolate import interpolate

        try:
            return interpolate(node, env)
        except ValueError as e:
            raise UsageError(f"{path}:{line}: {key}: {e}" if key else f"{path}:{line}: {e}") from None
    return node


# --------------------------------------------------------------------------- dependencies


def _parse_target_url(text: str, where: str):
    """-> (kind, url). Bare `host:port` means tcp://host:port."""
    from urllib.parse import urlsplit

    from waitfor.masking import mask_url
    from waitfor.probes import table

    text = text.strip()
    if not text:
        raise at(where, "empty target")
    if "://" not in text:
        text = "tcp://" + text
    scheme = text.split("://", 1)[0].lower()
    kind = table.SCHEMES.get(scheme)
    if kind is None:
        known = ", ".join(sorted(table.SCHEMES))
        raise at(where, f"unknown scheme {scheme!r} in {mask_url(text)!r} (known: {known})")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as e:
        why = str(e)
        if why.startswith("Port could not be cast"):  # its text would echo what follows the ':'
            why = "the port is not a number"
            rest = text.split("://", 1)[1]
            if "@" in rest:
                why += " (in a password, write / ? # @ as %2F %3F %23 %40)"
            elif rest.split("/", 1)[0].count(":") > 1 and "[" not in rest:
                why += " (an IPv6 address goes in brackets: [::1]:5432)"
        raise at(where, f"bad URL {mask_url(text)!r}: {why}") from None
    mod = table.module(kind)
    # PORT: "required", a default port number, or None when the kind has no port.
    if mod.PORT is not None:
        if not parts.hostname:
            raise at(where, f"bad URL {mask_url(text)!r}: no host")
        if port is None and mod.PORT == "required":
            raise at(where, f"bad URL {mask_url(text)!r}: no port (write host:port)")
        if port == 0:
            raise at(where, f"bad URL {mask_url(text)!r}: port 0")
    check = getattr(mod, "check_url", None)
    if check is not None:
        try:
            check(parts)
        except ValueError as e:
            raise at(where, f"bad URL {mask_url(text)!r}: {e}") from None
    return kind, text


def _url_secrets(url: str) -> set:
    """The password of a URL as written and decoded, the Basic credentials made of it, and
    the values of secret-looking query parameters (?token=...): all masked in messages."""
    from urllib.parse import unquote, unquote_plus, urlsplit

    from waitfor.masking import TOKEN_USERINFO_SCHEMES, secret_query_key

    parts = urlsplit(url)
    found = set()
    if parts.password:
        found.update({parts.password, unquote(parts.password)})
        import base64

        cred = f"{unquote(parts.username or '')}:{unquote(parts.password)}".encode()
        found.add(base64.b64encode(cred).decode())
    elif parts.username and parts.scheme in TOKEN_USERINFO_SCHEMES:
        found.update({parts.username, unquote(parts.username)})  # nats://TOKEN@host
        import base64

        found.add(base64.b64encode(f"{unquote(parts.username)}:".encode()).decode())  # http Basic
    for pair in parts.query.split("&"):
        key, _, val = pair.partition("=")
        if val and secret_query_key(key):
            found.update({val, unquote(val), unquote_plus(val)})
    return found


def _header_secrets(value: str) -> set:
    """A header value, and its credentials alone: `Bearer abc` -> also `abc`."""
    found = {value}
    scheme, sep, cred = value.strip().partition(" ")
    if sep and cred.strip():
        found.add(cred.strip())
    return found


def _default_name(kind: str, url: str, argv) -> str:
    from waitfor.masking import mask_url, mask_urls_in

    if kind == "command":
        return mask_urls_in(" ".join(argv))[:60]
    masked = mask_url(url)
    return masked[len("tcp://"):] if kind == "tcp" else masked


def _dependency_from_target(text: str, where: str) -> Dependency:
    kind, url = _parse_target_url(text, where)
    return _build(kind, url=url, argv=(), options={}, name=None, timeout=None, after=(),
                  invert=False, where=where, where_of=lambda key: where)


def _dependency_from_yaml(item, env, path: str, index: int, section: str, line: int = 0) -> Dependency:
    line_here = getattr(item, "line", 0) or line
    if isinstance(item, str):
        return _dependency_from_target(item, f"{path}:{line_here or '?'}: {section}[{index}]")
    if not isinstance(item, dict):
        raise UsageError(f"{path}:{line_here or '?'}: {section}[{index}]: expected a URL or a mapping")

    def where_of(key):
        return f"{path}:{item.lines.get(key, item.line)}: {section}[{index}].{key}"

    here = f"{path}:{item.line}: {section}[{index}]"
    if ("url" in item) == ("command" in item):
        raise UsageError(f"{here}: give exactly one of url: or command:")

    def get(key, parse, default=None):
        if key not in item:
            return default
        try:
            return parse(item[key])
        except ValueError as e:
            raise at(where_of(key), str(e)) from None

    if "command" in item:
        kind, url, argv = "command", "", get("command", v.argv)
    else:
        kind, url = _parse_target_url(get("url", v.string), where_of("url"))
        argv = ()
    from waitfor.probes import table

    allowed = getattr(table.module(kind), "OPTIONS", {})
    options = {}
    for key in item:
        if key in COMMON_KEYS:
            continue
        if key not in allowed:
            hint = f" (options of a {kind} dependency: {', '.join(sorted(allowed))})" if allowed else ""
            raise at(where_of(key), f"unknown key, or an option that does not belong to a {kind} dependency{hint}")
        options[key] = get(key, allowed[key])
    timeout = get("timeout", v.duration)
    return _build(
        kind, url=url, argv=argv, options=options,
        name=get("name", v.string), timeout=timeout if timeout else None,
        after=get("after", v.string_list, ()), invert=get("invert", v.boolean, False),
        where=here, where_of=where_of,
    )


def _build(kind, *, url, argv, options, name, timeout, after, invert, where, where_of) -> Dependency:
    from waitfor.masking import urls_in
    from waitfor.probes import table

    mod = table.module(kind)
    secrets = _url_secrets(url) if url else set()
    for arg in argv:  # a command's arguments may hold a DSN with a password
        for found in urls_in(arg):
            try:
                secrets |= _url_secrets(found)
            except ValueError:
                pass
    for key in getattr(mod, "SECRET_OPTIONS", ()):
        val = options.get(key)
        if isinstance(val, dict):
            for one in val.values():
                secrets |= _header_secrets(one)
        elif isinstance(val, str):
            secrets.add(val)
    if "password_file" in options:
        try:
            secrets.add(v.read_secret_file(options["password_file"]))
        except (OSError, UnicodeDecodeError) as e:
            raise at(where_of("password_file"), f"cannot read: {e}") from None
    driver = getattr(mod, "DRIVER", None)
    if driver is not None:
        import importlib.util

        try:
            found = importlib.util.find_spec(driver) is not None
        except (ImportError, ValueError):  # a dotted name whose parent package is missing
            found = False
        if not found:
            raise at(where, f"the {kind} driver ({driver}) is not installed: pip install 'waitfor[{mod.EXTRA}]'")
    dep = Dependency(
        name=name or _default_name(kind, url, argv), named=bool(name), kind=kind, url=url, argv=tuple(argv),
        options=MappingProxyType(options), timeout=timeout, after=tuple(after),
        invert=invert, secrets=frozenset(s for s in secrets if s), where=where,
    )
    _check_probe(mod, dep)
    return dep


def _check_probe(mod, dep) -> None:
    """Build the probe once now: what its driver rejects while parsing the URL or options
    (pika's `?heartbeat=abc`, a psycopg without libpq) is a config error, exit 2, before
    any waiting, rather than a failed attempt every interval until the timeout."""
    from waitfor.masking import mask_urls_in, redact
    from waitfor.probes.base import describe

    try:
        mod.probe_for(dep)
    except ImportError as e:
        extra = getattr(mod, "EXTRA", dep.kind)
        raise at(dep.where, f"the {dep.kind} driver cannot be imported ({describe(e)}): "
                            f"pip install 'waitfor[{extra}]'") from None
    except (ValueError, TypeError) as e:
        raise at(dep.where, f"{dep.kind}: {redact(mask_urls_in(describe(e)), dep.secrets)}") from None


def _check_graph(deps, section: str):
    """Unique names; `after:` names exist; no cycles (a cycle would wait forever)."""
    names = {}
    for d in deps:
        if d.name in names:
            raise UsageError(f"{d.where}: name {d.name!r} is used twice in {section} (set name: to tell them apart)")
        names[d.name] = d
    for d in deps:
        for a in d.after:
            if a not in names:
                raise UsageError(f"{d.where}: after: no dependency is named {a!r}")
            if a == d.name:
                raise UsageError(f"{d.where}: after: {a!r} waits for itself")
    state = {}

    def visit(name, trail):
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            cycle = trail[trail.index(name):] + [name]
            raise UsageError(f"{names[name].where}: after: cycle {' -> '.join(cycle)}")
        state[name] = "open"
        for a in names[name].after:
            visit(a, trail + [name])
        state[name] = "done"

    for name in names:
        visit(name, [])


def _uniquify(deps):
    """Targets from different places may share a default name; suffix repeats with #2, #3.
    A name given with `name:` is kept as it is: given twice, it is an error (_check_graph)."""
    used = {d.name for d in deps if d.named}
    seen, out = {}, []
    for d in deps:
        if not d.named:
            n = seen.get(d.name, 0) + 1
            seen[d.name] = n
            base, name = d.name, d.name if n == 1 else f"{d.name}#{n}"
            while name in used:
                n += 1
                seen[base] = n
                name = f"{base}#{n}"
            used.add(name)
            if name != d.name:
                d = d._replace(name=name)  # Dependency is a NamedTuple
        out.append(d)
    return out


def split_targets(text: str):
    return [t for t in text.replace(",", " ").split() if t]


# --------------------------------------------------------------------------- entry point


def build(args, env) -> Config:
    """`args` is the argparse namespace from waitfor.cli; `env` is os.environ."""
    cli = vars(args)
    path = cli.get("config") or env.get("WAITFOR_CONFIG") or None
    doc = None
    if path:
        from waitfor import yamlfile

        doc = yamlfile.load(path)
        if doc is None:
            from waitfor.yamlfile import LDict

            doc = LDict()
            doc.line, doc.lines = 1, {}
        if not isinstance(doc, dict):
            raise UsageError(f"{path}: the config must be a mapping (timeout:, dependencies:, ...)")
        doc = _interpolate_doc(doc, env, path)
        for key in doc:
            if key not in TOP_KEYS:
                raise UsageError(f"{_file_where(path, doc, key)}: unknown key (known: {', '.join(TOP_KEYS)})")

    def pick(key, parse, flag, envname=None):
        return _pick(key, cli, env, envname, doc, path, parse, flag)

    timeout = pick("timeout", v.duration, "--timeout", "WAITFOR_TIMEOUT")
    interval = pick("interval", v.duration, "--interval")
    max_interval = pick("max_interval", v.duration, "--max-interval")
    attempt_timeout = pick("attempt_timeout", v.duration, "--attempt-timeout")
    def source(key, flag):
        """Where the value of `key` came from, for an error about it."""
        if cli.get(key) is not None:
            return flag
        return _file_where(path, doc, key) if doc is not None and key in doc else key

    if interval <= 0:
        raise at(source("interval", "--interval"), "must be more than 0")
    if max_interval < interval:
        max_interval = interval
    if attempt_timeout <= 0:
        raise at(source("attempt_timeout", "--attempt-timeout"), "must be more than 0")

    def log_format(val):
        val = v.string(val)
        if val not in ("text", "json"):
            raise ValueError(f"expected text or json, got {val!r}")
        return val

    watch = doc.get("watch") if doc is not None else None
    watch_interval = None
    failure_threshold = DEFAULTS["failure_threshold"]
    if watch is not None:
        if not isinstance(watch, dict):
            raise UsageError(f"{_file_where(path, doc, 'watch')}: expected a mapping (interval:, failure_threshold:)")
        for key in watch:
            if key not in WATCH_KEYS:
                raise UsageError(f"{path}:{watch.lines[key]}: watch.{key}: unknown key (known: {', '.join(WATCH_KEYS)})")
        for key, parse in (("interval", v.duration), ("failure_threshold", v.positive_int)):
            if key not in watch:
                continue
            try:
                val = parse(watch[key])
            except ValueError as e:
                raise UsageError(f"{path}:{watch.lines[key]}: watch.{key}: {e}") from None
            if key == "interval":
                watch_interval = val
            else:
                failure_threshold = val
        if "interval" not in watch:
            watch_interval = DEFAULTS["watch_interval"]
    if cli.get("watch_interval") is not None:
        try:
            watch_interval = v.duration(cli["watch_interval"])
        except ValueError as e:
            raise at("--watch-interval", str(e)) from None
    if cli.get("failure_threshold") is not None:
        try:
            failure_threshold = v.positive_int(cli["failure_threshold"])
        except ValueError as e:
            raise at("--failure-threshold", str(e)) from None
    if watch_interval == 0:
        watch_interval = None

    deps = []
    health = None
    if doc is not None:
        for section in ("dependencies", "health"):
            items = doc.get(section)
            if items is None:
                continue
            if not isinstance(items, list):
                raise UsageError(f"{_file_where(path, doc, section)}: expected a list")
            parsed = [_dependency_from_yaml(item, env, path, i, section, line)
                      for i, (item, line) in enumerate(zip(items, items.lines))]
            if section == "dependencies":
                deps = parsed
            else:
                parsed = _uniquify(parsed)
                _check_graph(parsed, "health")
                health = tuple(parsed)
    for i, t in enumerate(split_targets(env.get("WAITFOR_TARGETS", ""))):
        deps.append(_dependency_from_target(t, f"WAITFOR_TARGETS (item {i + 1})"))
    for i, t in enumerate(cli.get("targets") or ()):
        from waitfor.masking import mask_url

        deps.append(_dependency_from_target(t, f"target {mask_url(t)!r} (argument {i + 1})" if "@" not in t else f"target argument {i + 1}"))
    deps = _uniquify(deps)
    _check_graph(deps, "dependencies")

    return Config(
        mode=cli.get("mode", "run"),
        command=tuple(cli.get("command") or ()),
        config_file=path,
        timeout=timeout or None,
        interval=interval,
        max_interval=max_interval,
        attempt_timeout=attempt_timeout,
        dependencies=tuple(deps),
        health=health,
        log_format=pick("log_format", log_format, "--log-format", "WAITFOR_LOG_FORMAT"),
        verbosity=cli.get("verbosity") or 0,
        supervise=cli.get("supervise") or "auto",
        group=bool(cli.get("group")),
        rewrite=MappingProxyType(dict(_flag_list("--rewrite", cli.get("rewrite"), parse_rewrite))),
        stop_timeout=pick("stop_timeout", v.duration, "--stop-timeout"),
        stop_signal=pick("stop_signal", _parse_signal, "--stop-signal"),
        success_exit=frozenset(_flag_list("--success-exit", cli.get("success_exit"), parse_exit_code)),
        watch_interval=watch_interval,
        failure_threshold=failure_threshold,
        probe_addr=pick("probe_addr", parse_addr, "--probe-addr"),
    )


def _flag_list(flag: str, raw, parse) -> list:
    """Parse each value of a repeatable flag, naming the flag in the error."""
    try:
        return [parse(item) for item in raw or ()]
    except ValueError as e:
        raise at(flag, str(e)) from None


def _parse_signal(text):
    from waitfor.signames import parse_signal  # imports `signal`'s enums: only when needed

    return parse_signal(text)


def parse_rewrite(text: str):
    """`--rewrite TERM:QUIT` -> (15, 3); `X:-` drops X -> (X, 0)."""
    from waitfor.signames import parse_signal

    src, sep, dst = text.partition(":")
    if not sep:
        raise ValueError(f"expected SIG:SIG, such as TERM:QUIT or WINCH:-, got {text!r}")
    import signal

    source = parse_signal(src)
    if source in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):  # never reach or never forwarded
        raise ValueError(f"{src.strip()} cannot be rewritten: waitfor never forwards it")
    return source, 0 if dst.strip() == "-" else parse_signal(dst)


def parse_exit_code(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 255:
        raise ValueError(f"expected an exit code 0-255, got {text!r}")
    return int(text)


def parse_addr(text) -> tuple:
    """HOST:PORT, [::1]:PORT or :PORT (all interfaces)."""
    s = v.string(text)
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {s!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
