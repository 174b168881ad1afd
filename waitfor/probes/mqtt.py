"""mqtt:// and mqtts://[user:pass@]host:port: ready when the broker accepts an MQTT 3.1.1
CONNECT (a CONNACK with return code 0), then the session is closed again with DISCONNECT.

A refused CONNACK shows the broker's reason ("Not authorized", "Bad user name or
password"). `password_file:` reads the password from a Docker/Kubernetes secret file.
mqtts uses the system's CA bundle, or `ca_file:`; `insecure: true` skips verification.
Works with paho-mqtt 2 (CallbackAPIVersion.VERSION2) and 1.x.
One connection per attempt: the scheduler's own connects answer while nothing listens
(connect_target); then each attempt is paho's alone, and a refused one is `Refused`.
"""

from __future__ import annotations

import time

from waitfor.config import validators as v
from waitfor.probes.base import NotReady, accept_url, host_port, no_cancel, password_of, tcp_target, tls_context
from waitfor.probes.connect import refusal

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Any

    from waitfor.config.model import Dependency
    from waitfor.probes.base import Options, Probe
    from waitfor.urls import SplitResult

PORT = 1883  # or 8883 for mqtts
READY_ON_CONNECT = False
STILL_THERE = "still reachable"  # what `invert: true` says while it answers
check_url = accept_url
cancel = no_cancel
OPTIONS: Options = {
    "password_file": v.readable_file,
    "ca_file": v.readable_file,
    "insecure": v.boolean,
}
SECRET_OPTIONS = ()  # the password file's content is added to the secrets by config.py
# find_spec of a dotted name imports its parent and raises ModuleNotFoundError when
# paho-mqtt is missing; the top-level "paho" package is what paho-mqtt installs.
DRIVER = "paho"
EXTRA = "mqtt"


def connect_target(parts: SplitResult) -> tuple[str, int] | None:
    return tcp_target(parts, 8883 if parts.scheme.lower() == "mqtts" else PORT)


def probe_for(dep: Dependency) -> Probe:
    import ssl

    import paho.mqtt.client as mqtt

    from waitfor.urls import unquote, urlsplit

    parts = urlsplit(dep.url)
    tls = parts.scheme.lower() == "mqtts"
    host, port = host_port(parts, 8883 if tls else PORT)
    user = unquote(parts.username) if parts.username is not None else None
    password = password_of(dep, parts)
    context = None
    if tls:
        context = tls_context(dep.options)
    v2 = hasattr(mqtt, "CallbackAPIVersion")

    def probe(timeout: float) -> str:
        deadline = time.monotonic() + timeout
        addr = host
        result: dict[str, Any] = {}
        client = _new_client(result, v2, user, password, context)
        left = max(deadline - time.monotonic(), 0.05)
        try:
            client.connect_timeout = left  # paho >= 2: bounds the socket connect (and TLS)
        except AttributeError:
            pass
        try:
            # The keepalive the broker should expect; this session lives for one attempt.
            client.connect(host, port, keepalive=max(int(timeout) * 2, 5))
            addr = _peer(client, host)
            _await_connack(client, result, deadline, timeout)
        except (OSError, ssl.SSLError) as e:
            raise refusal(e, host, port) or NotReady(f"{type(e).__name__}: {e}") from None
        finally:
            _close(client, accepted=result.get("rc") == 0)
        if result["rc"] != 0:
            raise NotReady(f"CONNACK refused: {result['why']}")
        return f"connected to {addr}, CONNACK accepted"

    return probe


def _new_client(result: dict[str, Any], v2: bool, user: str | None, password: str | None,
                context: ssl.SSLContext | None) -> Any:
    """A paho client (callback API v2 when `v2`, else v1) for one attempt: its CONNACK's code and
    words go to `result` ("rc", "why")."""
    import os

    import paho.mqtt.client as mqtt

    # A client id of our own: brokers disconnect an older session with the same id.
    client_id = f"waitfor-{os.getpid()}-{os.urandom(3).hex()}"
    if v2:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311)
    else:
        client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv311)

    def on_connect(_client: object, _userdata: object, _flags: object, rc: Any,
                   _properties: object = None) -> None:
        # v2: rc is a ReasonCode (0 = Success); v1: an int CONNACK return code.
        code = getattr(rc, "value", rc)
        result["rc"] = code
        result["why"] = str(rc) if v2 else mqtt.connack_string(rc)

    client.on_connect = on_connect
    if user is not None:
        client.username_pw_set(user, password)
    if context is not None:
        client.tls_set_context(context)
    return client


def _await_connack(client: Any, result: dict[str, Any], deadline: float, timeout: float) -> None:
    """Run the client's loop until the broker's CONNACK (on_connect) or the deadline."""
    import paho.mqtt.client as mqtt

    while "rc" not in result:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NotReady(f"no CONNACK within {timeout:.3g}s (is this an MQTT broker?)")
        err = client.loop(timeout=min(left, 0.2))
        if err != mqtt.MQTT_ERR_SUCCESS and "rc" not in result:
            raise NotReady(f"MQTT: {mqtt.error_string(err)}")


def _peer(client: Any, host: str) -> str:
    """The address that accepted (a name may resolve to several)."""
    try:
        return str(client.socket().getpeername()[0])
    except (AttributeError, OSError, IndexError, TypeError):
        return host


def _close(client: Any, accepted: bool) -> None:
    """Say DISCONNECT when the session was accepted (so the broker logs a clean goodbye,
    not a lost client), then close the socket; no background loop thread is running."""
    try:
        if accepted:
            client.disconnect()
            client.loop_write()
    except Exception:  # noqa: BLE001 - closing must not mask the reason of the attempt
        pass
    sock = client.socket()
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
