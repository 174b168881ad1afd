"""Runtime watch: while the app runs, probe the dependencies and the health checks every
`watch.interval`; when one fails `failure_threshold` times in a row, call `on_failure`
(the supervisor then stops the app and exits with exitcodes.DEPENDENCY_LOST, so that the
orchestrator restarts the container, as a failing Kubernetes liveness probe would).

Without `on_failure` (`waitfor sidecar`: no app to stop) the watch never ends by itself:
each round only updates the Status, so /readyz and `waitfor health` follow the
dependencies down and up again."""

from __future__ import annotations

import threading

from waitfor.probes.limits import local_limit
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
    def __init__(self, cfg: Config, status: Status, log: Log,
                 on_failure: Callable[[Outcome], None] | None, probes: Mapping[str, Probe] | None = None) -> None:
        self.cfg, self.status, self.log, self.on_failure = cfg, status, log, on_failure
        self.checks = watched(cfg)
        self.failing: set[str] = set()  # names whose last check failed, to say when they are back
        # built once before the wait (wait.build.build_watched) and reused by every round
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
            if ok:
                if o.dep.name in self.failing:
                    self.failing.discard(o.dep.name)
                    self.log.info(f"watch: {o.dep.name} is ready again: {o.reason}", dep=o.dep.name)
                continue
            self.failing.add(o.dep.name)
            if self.on_failure is None:  # nothing to stop, no threshold: one warning per outage
                log = self.log.warning if failures == 1 else self.log.debug
                log(f"watch: {o.dep.name} failed ({failures} in a row): {o.reason}", dep=o.dep.name,
                    failures=failures)
                continue
            self.log.warning(f"watch: {o.dep.name} failed ({failures}/{self.cfg.failure_threshold}): {o.reason}",
                             dep=o.dep.name, failures=failures)
            if failures >= self.cfg.failure_threshold and lost is None:
                lost = o
        self.status.save()
        return lost

    def _loop(self) -> None:
        troubled = False
        while not self.stopped.wait(self.cfg.watch_interval):
            try:
                lost = self.round()
            except Exception as e:  # noqa: BLE001 - the watch must outlive a round it cannot run
                # Out of threads under a pids limit (RuntimeError: can't start new thread),
                # or of fds: without this the watch thread died with a traceback and the
                # watch stopped for good, /readyz frozen at its last answer. The round is
                # tried again next interval; the state file is not refreshed meanwhile, so
                # `waitfor health` stops trusting it and probes by itself.
                (self.log.debug if troubled else self.log.warning)(
                    f"watch: cannot run a round, trying again in {self.cfg.watch_interval:g}s: "
                    f"{local_limit(e) or f'{type(e).__name__}: {e}'}")
                troubled = True
                continue
            if troubled:
                troubled = False
                self.log.info("watch: rounds run again")
            if lost is not None and not self.stopped.is_set() and self.on_failure is not None:
                self.log.error(
                    f"watch: {lost.dep.name} failed {self.cfg.failure_threshold} times in a row: {lost.reason}; "
                    "stopping the app", dep=lost.dep.name, target=lost.dep.display)
                self.on_failure(lost)
                return
