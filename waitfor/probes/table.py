"""The explicit table of kinds: URL scheme -> kind -> module. Modules are imported only
when a dependency of that kind is configured, so an unused driver costs nothing.

Every module satisfies `waitfor.probes.base.Kind` (mypy checks it below, under
TYPE_CHECKING, so start-up imports no probe module it does not need)."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Dependency
    from waitfor.probes import (
        amqp,
        command,
        dns,
        file,
        grpc,
        http,
        mqtt,
        mysql,
        nats,
        postgres,
        redis,
        tcp,
        unix,
    )
    from waitfor.probes.base import Kind, Probe

    # The static proof that each module is a Kind (a missing or mistyped member is a
    # mypy error here, not an AttributeError at run time).
    _CHECKED: tuple[Kind, ...] = (
        tcp, http, unix, file, dns, command, postgres, mysql, redis, amqp, mqtt, nats, grpc,
    )

# kind -> module implementing it (see waitfor.probes.base for what a module provides)
KINDS: dict[str, str] = {
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
SCHEMES: dict[str, str] = {
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


def load(kind: str) -> Kind:
    """The module of `kind`; every module defines every member of `Kind`."""
    import importlib

    mod: Kind = importlib.import_module(KINDS[kind])
    return mod


def driver_hint(kind: str) -> str:
    """How to get a kind's driver: the full bundle when frozen (packaging/), else the kind's
    extra. Never `pip install 'waitfor[x]'` alone: that name on a package index is not ours."""
    if getattr(sys, "frozen", False):
        return f"the {kind} driver is not in this bundle: use the full bundle (waitfor-full)"
    extra = load(kind).EXTRA
    return f"install waitfor with its {extra} extra (from a checkout: pip install '.[{extra}]')"


def build_probe(dep: Dependency) -> Probe:
    from waitfor.errors import at
    from waitfor.probes.base import describe
    from waitfor.probes.limits import bounded, preload_unwinder
    from waitfor.secrets import mask_urls_in, redact

    global _preloaded
    # Not for tcp, which the scheduler probes in its own loop: ctypes costs ~2.5 ms of
    # start-up, and `waitfor host:port -- app` is the start-up path that is measured.
    if not _preloaded and dep.kind != "tcp":
        preload_unwinder()
        _preloaded = True
    mod = load(dep.kind)
    try:
        return bounded(mod.probe_for(dep))
    except ImportError as e:
        raise at(dep.where, f"the {dep.kind} driver cannot be imported ({describe(e)}): "
                            f"{driver_hint(dep.kind)}") from None
    except (ValueError, TypeError) as e:
        raise at(dep.where, f"{dep.kind}: {redact(mask_urls_in(describe(e)), dep.secrets)}") from None


_preloaded = False
