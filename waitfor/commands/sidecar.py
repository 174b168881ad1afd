"""`waitfor sidecar`: the gate for images waitfor cannot enter (Alpine, scratch,
distroless/static, images one does not own). waitfor runs beside the app, in its own
container, instead of in front of it:

    probes -> wait (/startupz 503) -> watch, no app (/startupz 200; /readyz follows the
    watch) -> SIGTERM or SIGINT -> exit 0

A Kubernetes native sidecar (an init container with `restartPolicy: Always`) gates the
app containers on its startupProbe (/startupz), and its readinessProbe (/readyz) takes the
pod out of the Service's endpoints while a watched dependency fails; a compose service's
healthcheck (`waitfor health`, which reads the same state) gates the others through
`depends_on: condition: service_healthy`. The same Watched (state file, probe endpoint,
watch) as `run` with a watch: only the hand-over differs (waitfor.supervise.inprocess).
"""

from __future__ import annotations

from waitfor import exitcodes
from waitfor.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from waitfor.config.model import Config
    from waitfor.output import Log


def run_sidecar(cfg: Config, log: Log, given: Mapping[str, str] | None = None) -> int:
    """`given`: the flags as typed (args.parse), to tell `--watch-interval 0` from none."""
    if not cfg.dependencies:
        # A gate with nothing to wait for would open at once and pass every probe for ever:
        # a sidecar that lost its config must fail loudly, not wave the app through.
        raise UsageError("sidecar: nothing to wait for: no dependencies (give targets, -c FILE or WAITFOR_TARGETS)")
    if cfg.watch_interval is None:
        # The watch is what /readyz follows: a sidecar always watches. (A config file's
        # `watch: {interval: 0}`, written for `run`, cannot be told from no interval here.)
        if given and "watch_interval" in given:
            raise UsageError(f"{given['watch_interval']}: the sidecar always watches: give a duration of more than 0")
        from waitfor.config.model import DEFAULT_WATCH_INTERVAL

        cfg = cfg._replace(watch_interval=DEFAULT_WATCH_INTERVAL)
    from waitfor.supervise.inprocess import Watched
    from waitfor.wait.build import build_watched
    from waitfor.wait.loop import wait

    probes, watch_probes = build_watched(cfg)
    with Watched(cfg, log, watch_probes) as watched:
        code = wait(cfg, log, probes, observe=watched.observe)
        if code in (exitcodes.from_signal(15), exitcodes.from_signal(2)):
            return exitcodes.OK  # stopped while waiting: as once the gate is open
        if code != exitcodes.OK:
            return code
        return watched.gate()
