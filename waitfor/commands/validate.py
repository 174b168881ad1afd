"""`waitfor validate`: the effective configuration, after flags, environment and file
are merged and interpolated, with every secret masked, in the file's own shape: the keys
of SETTINGS that a file may set, and durations as a user writes them (5m, 50ms)."""

from __future__ import annotations

from waitfor.config.model import SETTINGS
from waitfor.secrets import MASK, redact

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Config, Dependency


def _statuses(codes: frozenset[int]) -> object:
    """HTTP statuses as written: a whole class as "3xx", other codes one by one."""
    out: list[object] = []
    for cls in range(1, 6):
        whole = set(range(cls * 100, cls * 100 + 100))
        if whole <= codes:
            out.append(f"{cls}xx")
        else:
            out.extend(sorted(whole & codes))
    return out[0] if len(out) == 1 else out


def _dep(d: Dependency) -> dict[str, object]:
    from waitfor.config.durations import format_duration
    from waitfor.secrets import mask_urls_in

    # The URL is masked by its structure, as every log line shows it; the rest by the
    # dependency's secrets (a password_file's content, a header value).
    out: dict[str, object] = {"name": redact(d.name, d.secrets), "kind": d.kind}
    if d.kind == "command":
        out["command"] = [redact(mask_urls_in(a), d.secrets) for a in d.argv]
    else:
        out["url"] = d.display
    for key, val in d.options.items():
        if hasattr(val, "pattern"):
            val = val.pattern
        elif isinstance(val, frozenset):
            val = _statuses(val)
        elif isinstance(val, dict):
            val = {k: MASK for k in val}  # header values may carry tokens: never shown
        out[key] = redact(val, d.secrets) if isinstance(val, str) else val
    if d.timeout:
        out["timeout"] = format_duration(d.timeout)
    if d.after:
        out["after"] = list(d.after)
    if d.invert:
        out["invert"] = True
    return out


def effective(cfg: Config) -> dict[str, object]:
    out: dict[str, object] = {"config_file": cfg.config_file}
    for s in SETTINGS:
        if not s.yaml:
            continue
        value = getattr(cfg, s.key)
        if value is None and s.default is None:
            continue  # not set, and off by default: probe_addr, the watch
        if s.yaml.startswith("watch.") and not cfg.watch_interval:
            continue
        shown = s.show(value) if s.show else value
        if "." in s.yaml:
            parent, child = s.yaml.split(".", 1)
            out.setdefault(parent, {})[child] = shown  # type: ignore[index]
        else:
            out[s.yaml] = shown
    out["dependencies"] = [_dep(d) for d in cfg.dependencies]
    if cfg.health is not None:
        out["health"] = [_dep(d) for d in cfg.health]
    return out


def _offline_probes(deps: tuple[Dependency, ...]) -> None:
    """validate --offline: each probe is still built, so that the driver's own checks of a
    URL or option run (libpq's parser rejects `?bogus=1`), when the driver is installed
    here (issue 16 E23); without it, and without the options that read files (a secret
    file need not exist where CI runs), which build_probe would otherwise read."""
    from importlib.util import find_spec

    from waitfor.config.validators import MappingProxyType, Validator
    from waitfor.probes import table
    from waitfor.wait.build import build_probes

    def _reads_file(parse: object) -> bool:
        return isinstance(parse, Validator) and parse.reads_file

    built = []
    for dep in deps:
        mod = table.load(dep.kind)
        try:
            if mod.DRIVER and find_spec(mod.DRIVER) is None:
                continue
        except (ImportError, ValueError):
            continue
        kept = {k: val for k, val in dep.options.items() if not _reads_file(mod.OPTIONS.get(k))}
        built.append(dep._replace(options=MappingProxyType(kept)))
    build_probes(built)


def run_validate(cfg: Config, offline: bool = False) -> int:
    """Print the effective config. Unless `offline`, what `run` checks before the wait is
    checked here too: each probe is built (what a driver rejects in a URL or an option
    fails here, as it would at start), the `*_FILE` secrets are read, and the templates
    are rendered against this environment (a missing source or destination folder, an
    unsafe path, a missing required variable), written nowhere."""
    import os

    import yaml

    from waitfor.output import masked_data, write_stdout

    if offline:
        _offline_probes(cfg.dependencies + (cfg.health or ()))
    else:
        from waitfor.wait.build import build_probes

        build_probes(cfg.dependencies + (cfg.health or ()))
    env: dict[str, str] = dict(os.environ)
    if cfg.secrets_env:  # a bad NAME_FILE fails here as at start; its value never shows
        from waitfor.config.secrets_env import apply, read
        from waitfor.output import mask

        values, removed = read(os.environ, cfg.secrets_env, cfg.secrets_dirs)
        mask(values.values())
        apply(values, removed, env)
    if cfg.templates and not offline:  # every template's error, as every error of the file
        from waitfor import templates
        from waitfor.errors import UsageError, UsageErrors
        from waitfor.output import Log

        errors = []
        for one in cfg.templates:
            try:
                templates.render(cfg._replace(templates=(one,)), env, Log(cfg.log_format))
            except UsageError as e:
                errors.append(e)
        if errors:
            raise errors[0] if len(errors) == 1 else UsageErrors(errors)
    # Masked before YAML renders it (a long string may be folded, a quote escaped), and
    # again by write_stdout as it leaves.
    text = yaml.safe_dump(masked_data(effective(cfg)), sort_keys=False, default_flow_style=False)
    write_stdout(text)
    return 0
