"""argv, the environment and the YAML file become one frozen `Config`.

    build(): read the file -> interpolate it -> check its keys -> each SETTINGS row from its
             sources -> the dependencies (file, then WAITFOR_TARGETS, then the command line)
             -> names made unique, `after:` checked -> Config

Precedence, for each setting: command line > environment > config file > default
(waitfor.config.sources). Dependencies add up. Every error names where it is and is a
UsageError: exit 2, nothing started. No driver is imported here (waitfor.config.targets).
"""

from __future__ import annotations

from waitfor.config.model import (
    BY_KEY,
    DEFAULT_WATCH_INTERVAL,
    LIST_KEYS,
    SETTINGS,
    TOP_KEYS,
    Config,
    Dependency,
)
from waitfor.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from waitfor.config.model import Setting
    from waitfor.config.sources import Errors, Sources
    from waitfor.config.yamlfile import LDict

__all__ = ["Config", "Dependency", "build"]


def build(args: object, env: Mapping[str, str]) -> Config:
    """`args` is the namespace of waitfor.args.parse; `env` is os.environ."""
    from waitfor.config.sources import Errors, Sources

    cli = dict(vars(args))
    path = cli.get("config") or env.get("WAITFOR_CONFIG") or None
    unset: set[str] = set()
    errors = Errors(cli.get("mode") == "validate", str(path) if path else None)
    doc = _read_file(str(path), env, unset, errors) if path else None
    src = Sources(cli, env, path, doc, typed=cli.get("given"))
    values = {s.key: _value(src, s, errors) for s in SETTINGS if s.key != "config"}
    _cross_checks(values, src)
    if (cli.get("mode") or "run") == "run" or (cli.get("mode") == "validate" and not cli.get("offline")):
        _check_user(values, src, errors)
    deps, health = _dependencies(src, bool(cli.get("offline")), errors)
    errors.check()
    if unset and values["verbosity"] == 0:
        _warn_unset(str(path), sorted(unset), str(values["log_format"]))
    return Config(
        mode=cli.get("mode") or "run",
        command=tuple(cli.get("command") or ()),
        config_file=path,
        dependencies=tuple(deps),
        health=health,
        **values,
    )


def _warn_unset(path: str, names: list[str], log_format: str) -> None:
    """Once per variable, as Compose does: an unset ${API_TOKEN} silently became "Bearer "."""
    from waitfor.output import Log

    log = Log(log_format)
    for name in names:
        log.warning(f"{path}: the {name} variable is not set; using an empty string", variable=name)


def _value(src: Sources, s: Setting, errors: Errors) -> object:
    try:
        return src.value(s)
    except UsageError as e:
        errors.add(e)
        return s.default


def _read_file(path: str, env: Mapping[str, str], unset: set[str], errors: Errors) -> LDict:
    from waitfor.config import yamlfile
    from waitfor.config.interpolate import interpolate_doc
    from waitfor.config.sources import check_mapping

    doc = yamlfile.load(path)
    if doc is None:
        doc = yamlfile.LDict()
        doc.line, doc.lines = 1, {}
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: the config must be a mapping (timeout:, dependencies:, ...)")
    doc = interpolate_doc(doc, env, path, unset_names=unset, errors=errors)
    check_mapping(doc, path, TOP_KEYS, path, errors=errors)
    if "watch" in doc:
        nested = tuple(s.yaml.split(".", 1)[1] for s in SETTINGS if s.yaml and s.yaml.startswith("watch."))
        where = f"{path}:{doc.lines['watch']}: watch"
        try:
            check_mapping(doc["watch"], where, nested, path, prefix="watch.", errors=errors)
        except UsageError as e:
            errors.add(e)
    return doc


def _cross_checks(values: dict[str, object], src: Sources) -> None:
    """The rules between settings, which no single row can state."""
    if values["max_interval"] < values["interval"]:  # type: ignore[operator]
        values["max_interval"] = values["interval"]
    # A `watch:` mapping turns the watch on, at its default interval unless it names one.
    if src.raw(BY_KEY["watch_interval"]) is None and src.in_file("watch")[0]:
        values["watch_interval"] = DEFAULT_WATCH_INTERVAL


def _check_user(values: dict[str, object], src: Sources, errors: Errors) -> None:
    """Only root may switch user: said where `user` was given (`deps.yaml:3: user`,
    `--user`, `WAITFOR_USER`), before anything waits."""
    from waitfor.config.users import check_switch
    from waitfor.errors import at

    try:
        check_switch(values["user"])
    except ValueError as e:
        errors.add(at(src.where(BY_KEY["user"]), str(e)))


def _dependencies(src: Sources, offline: bool,
                  errors: Errors) -> tuple[list[Dependency], tuple[Dependency, ...] | None]:
    cli_targets: list[str] = src.cli.get("targets") or []  # type: ignore[assignment]
    if src.doc is None and not cli_targets and not src.env.get("WAITFOR_TARGETS"):
        return [], None  # `waitfor -- app`: the exec-only path does not load targets
    from waitfor.config import targets

    def each(make: Callable[..., Dependency], *args: object) -> list[Dependency]:
        try:
            return [make(*args)]
        except UsageError as e:
            errors.add(e)  # validate goes on with the next one
            return []

    deps: list[Dependency] = []
    health = None
    if src.doc is not None:
        for section in LIST_KEYS:
            items = src.doc.get(section)
            if items is None:
                continue
            if not isinstance(items, list):
                errors.add(UsageError(f"{src.where_in_file(section)}: expected a list"))
                continue
            parsed = [dep for i, (item, line) in enumerate(zip(items, items.lines))  # type: ignore[attr-defined]
                      for dep in each(targets.from_yaml, item, str(src.path), i, section, line, offline)]
            if section == "dependencies":
                deps = parsed
            elif not errors.found:
                parsed = targets.uniquify(parsed)
                targets.check_graph(parsed, "health")
                health = tuple(parsed)
    for i, t in enumerate(targets.split_targets(src.env.get("WAITFOR_TARGETS", ""))):
        deps += each(targets.from_target, t, f"WAITFOR_TARGETS (item {i + 1})", offline)
    for i, t in enumerate(cli_targets):
        from waitfor.secrets import mask_url  # only here: re and urllib cost ~7 ms of start-up

        where = f"target {mask_url(t)!r} (argument {i + 1})" if "@" not in t else f"target argument {i + 1}"
        deps += each(targets.from_target, t, where, offline)
    if errors.found:  # names and after: are checked on a list without holes
        return deps, health
    deps = targets.uniquify(deps)
    targets.check_graph(deps, "dependencies")
    return deps, health
