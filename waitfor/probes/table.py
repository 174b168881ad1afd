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
