"""Runtime watch: while the app runs, probe the dependencies and the health checks every
`watch.interval`; when one fails `failure_threshold` times in a row, call `on_failure`
(the supervisor then stops the app and exits with exitcodes.DEPENDENCY_LOST, so that the
orchestrator restarts the container, as a failing Kubernetes liveness probe would)."""

from __future__ import annotations

import threading

from waitfor.wait.engine import READY, Engine

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from waitfor.config.model import Config, Dependency
    from waitfor.output import Log
    from waitfor.probes.base import Probe
    from waitfor.supervise.state import Status
    from waitfor.wait.engine import Outcome


def watched(cfg: Config) -> list[Dependency]:
    """The dependencies and the health checks, each once (by name)."""
    seen, out = set(), []
    for dep in tuple(cfg.dependencies) + tuple(cfg.health or ()):
        if dep.name not in seen:
            seen.add(dep.name)
            out.append(dep)
    return out


class Watch:
    def __init__(self, cfg: Config, status: Status, log: Log, on_failure: Callable[[Outcome], None],
                 probes: Mapping[str, Probe] | None = None) -> None:
        self.cfg, self.status, self.log, self.on_failure = cfg, status, log, on_failure
        self.checks = watched(cfg)
        # built once (commands/run.py, before the wait) and reused by every round
        self.probes = dict(probes or {})
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="watch", daemon=True)

    def start(self) -> Watch:
        if self.checks and self.cfg.watch_interval:
            self.thread.start()
        return self

    def stop(self) -> None:
        """No more rounds; wait for one under way, so nothing is saved after this."""
        self.stopped.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(self.cfg.attempt_timeout + 2)

    def round(self) -> Outcome | None:
        """Probe every check once, in parallel; return the first that reached the threshold."""
        engine = Engine(self.cfg, self.checks, probes=self.probes, single_attempt=True).start()
        engine.done.wait(self.cfg.attempt_timeout + 1)  # a stuck driver must not stall the watch
        engine.cancel()
        lost = None
        if self.stopped.is_set():
            return None  # the app is gone: its results no longer matter
        for o in engine.results():
            ok = o.state == READY
            failures = self.status.record(o.dep.name, ok, o.reason)
            if not ok:
                self.log.warning(f"watch: {o.dep.name} failed ({failures}/{self.cfg.failure_threshold}): {o.reason}",
                                 dep=o.dep.name, failures=failures)
                if failures >= self.cfg.failure_threshold and lost is None:
                    lost = o
        self.status.save()
        return lost

    def _loop(self) -> None:
        while not self.stopped.wait(self.cfg.watch_interval):
            lost = self.round()
            if lost is not None and not self.stopped.is_set():
                self.log.error(
                    f"watch: {lost.dep.name} failed {self.cfg.failure_threshold} times in a row: {lost.reason}; "
                    "stopping the app", dep=lost.dep.name, target=lost.dep.display)
                self.on_failure(lost)
                return
