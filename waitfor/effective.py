"""`waitfor validate`: the effective configuration, after flags, environment and file
are merged and interpolated, with every secret masked."""

from waitfor.masking import MASK, redact


def _statuses(codes) -> list:
    """HTTP statuses as written: a whole class as "3xx", other codes one by one."""
    out = []
    for cls in range(1, 6):
        whole = set(range(cls * 100, cls * 100 + 100))
        if whole <= codes:
            out.append(f"{cls}xx")
        else:
            out.extend(sorted(whole & codes))
    return out[0] if len(out) == 1 else out


def _dep(d) -> dict:
    out = {"name": d.name, "kind": d.kind}
    if d.kind == "command":
        out["command"] = list(d.argv)
    else:
        out["url"] = d.display
    for key, val in d.options.items():
        if hasattr(val, "pattern"):
            val = val.pattern
        elif isinstance(val, frozenset):
            val = _statuses(val)
        elif isinstance(val, dict):
            val = {k: MASK for k in val}  # header values may carry tokens: never shown
        out[key] = val
    if d.timeout:
        out["timeout"] = f"{d.timeout:g}s"
    if d.after:
        out["after"] = list(d.after)
    if d.invert:
        out["invert"] = True
    return out


def effective(cfg) -> dict:
    from waitfor.signames import signal_name

    out = {
        "config_file": cfg.config_file,
        "timeout": f"{cfg.timeout:g}s" if cfg.timeout else "none",
        "interval": f"{cfg.interval:g}s",
        "max_interval": f"{cfg.max_interval:g}s",
        "attempt_timeout": f"{cfg.attempt_timeout:g}s",
        "stop_timeout": f"{cfg.stop_timeout:g}s",
        "stop_signal": signal_name(cfg.stop_signal),
        "log_format": cfg.log_format,
        "dependencies": [_dep(d) for d in cfg.dependencies],
    }
    if cfg.health is not None:
        out["health"] = [_dep(d) for d in cfg.health]
    if cfg.watch_interval:
        out["watch"] = {"interval": f"{cfg.watch_interval:g}s", "failure_threshold": cfg.failure_threshold}
    if cfg.probe_addr:
        out["probe_addr"] = f"{cfg.probe_addr[0]}:{cfg.probe_addr[1]}"
    return out


def print_effective(cfg) -> int:
    import yaml

    secrets = set()
    for d in cfg.dependencies + (cfg.health or ()):
        secrets |= d.secrets
    text = yaml.safe_dump(effective(cfg), sort_keys=False, default_flow_style=False)
    print(redact(text, secrets), end="")
    return 0
