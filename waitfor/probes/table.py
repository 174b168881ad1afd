"""The explicit table of kinds: URL scheme -> kind -> module. Modules are imported only
when a dependency of that kind is configured, so an unused driver costs nothing."""

import importlib

# kind -> module implementing it (see waitfor.probes.base for what a module provides)
KINDS = {
    "tcp": "waitfor.probes.tcp",
    "http": "waitfor.probes.http",
    "unix": "waitfor.probes.unix",
    "file": "waitfor.probes.file",
    "dns": "waitfor.probes.dns",
    "command": "waitfor.probes.command",
    "postgres": "waitfor.probes.postgres",
    "mysql": "waitfor.probes.mysql",
    "redis": "waitfor.probes.redis",
    "amqp": "waitfor.probes.amqp",
    "mqtt": "waitfor.probes.mqtt",
    "nats": "waitfor.probes.nats",
    "grpc": "waitfor.probes.grpc",
}

# URL scheme -> kind
SCHEMES = {
    "tcp": "tcp",
    "http": "http",
    "https": "http",
    "unix": "unix",
    "file": "file",
    "dns": "dns",
    "postgres": "postgres",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "redis": "redis",
    "rediss": "redis",
    "amqp": "amqp",
    "amqps": "amqp",
    "mqtt": "mqtt",
    "mqtts": "mqtt",
    "nats": "nats",
    "grpc": "grpc",
}


def module(kind: str):
    return importlib.import_module(KINDS[kind])


# Transitional (replaced by the probe-contract branch): the checked Kind table.
class _Defaults:
    _DEFAULTS = {"OPTIONS": {}, "SECRET_OPTIONS": (), "EXTRA": None, "DRIVER": None}

    def __init__(self, mod):
        self._mod = mod

    def __getattr__(self, name):
        try:
            return getattr(self._mod, name)
        except AttributeError:
            if name == "check_url":
                return lambda parts: None
            if name == "cancel":
                return lambda: None
            return _Defaults._DEFAULTS[name]


def load(kind: str):
    return _Defaults(module(kind))


def build_probe(dep):
    from waitfor.config.targets import driver_hint
    from waitfor.errors import at
    from waitfor.probes.base import describe
    from waitfor.secrets import mask_urls_in, redact

    mod = load(dep.kind)
    try:
        return mod.probe_for(dep)
    except ImportError as e:
        raise at(dep.where, f"the {dep.kind} driver cannot be imported ({describe(e)}): "
                            f"{driver_hint(dep.kind, mod.EXTRA)}") from None
    except (ValueError, TypeError) as e:
        raise at(dep.where, f"{dep.kind}: {redact(mask_urls_in(describe(e)), dep.secrets)}") from None
