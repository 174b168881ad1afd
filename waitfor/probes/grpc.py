"""grpc://host:port: ready when the standard health service (grpc.health.v1.Health/Check)
answers SERVING, for the whole server or, with `service:`, for that service name.

A server answers NOT_SERVING while it starts or drains, NOT_FOUND for a service it does not
know (yet), and UNIMPLEMENTED when it has no health service at all; each is shown.
`tls: true` uses TLS with the system's CA bundle (or `ca_file:`).
The port is probed with a plain TCP connect first (waitfor.probes.tcp), so a server that is
not listening yet costs no HTTP/2 handshake.
"""

from __future__ import annotations

import time

from waitfor.config import validators as v
from waitfor.probes.base import NotReady, host_port, no_cancel, tcp_target
from waitfor.probes.connect import connect

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

PORT = "required"  # gRPC has no standard port
READY_ON_CONNECT = False
STILL_THERE = "still reachable"  # what `invert: true` says while it answers


def connect_target(parts: SplitResult) -> tuple[str, int] | None:
    return tcp_target(parts, None)

cancel = no_cancel
OPTIONS: Options = {
    "service": v.string,
    "tls": v.boolean,
    "ca_file": v.readable_file,
}
SECRET_OPTIONS = ()
DRIVER = "grpc_health"
EXTRA = "grpc"


def check_url(parts: SplitResult) -> None:
    if parts.path not in ("", "/") or parts.query:
        raise ValueError("grpc URLs are grpc://host:port (name the service with service:)")


def probe_for(dep: Dependency) -> Probe:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from waitfor.urls import urlsplit

    parts = urlsplit(dep.url)
    host, port = host_port(parts)
    service = dep.options.get("service", "")
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    credentials = None
    if dep.options.get("tls"):
        root = None
        if dep.options.get("ca_file"):
            with open(dep.options["ca_file"], "rb") as f:
                root = f.read()
        credentials = grpc.ssl_channel_credentials(root_certificates=root)
    request = health_pb2.HealthCheckRequest(service=service)
    status_name = health_pb2.HealthCheckResponse.ServingStatus.Name
    what = f"service {service!r}" if service else "the server"

    def probe(timeout: float) -> str:
        deadline = time.monotonic() + timeout
        addr = connect(host, port, timeout)
        left = max(deadline - time.monotonic(), 0.05)
        # A new channel per attempt: a channel keeps its own reconnect backoff, which would
        # hide a server that has just come up behind gRPC's up-to-120s retry delay.
        if credentials is None:
            channel = grpc.insecure_channel(target)
        else:
            channel = grpc.secure_channel(target, credentials)
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            resp = stub.Check(request, timeout=left)
        except grpc.RpcError as e:
            raise NotReady(_reason(e, service)) from None
        finally:
            channel.close()
        if resp.status != health_pb2.HealthCheckResponse.SERVING:
            raise NotReady(f"{what} is {status_name(resp.status)}")
        return f"connected to {addr}, {what} is SERVING"

    return probe


def _reason(e: BaseException, service: str) -> str:
    import grpc

    code = e.code() if hasattr(e, "code") else None
    details = " ".join((e.details() if hasattr(e, "details") else str(e) or "").split())
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return "the server does not implement grpc.health.v1.Health (UNIMPLEMENTED)"
    if code == grpc.StatusCode.NOT_FOUND:
        return f"the server does not know service {service!r} (NOT_FOUND)"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer in time (DEADLINE_EXCEEDED; is this a gRPC server?)"
    name = code.name if code is not None else type(e).__name__
    return f"{name}: {details}" if details else name
