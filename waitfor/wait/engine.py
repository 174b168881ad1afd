"""The waiting engine: every dependency waits in its own thread, in parallel, under the
overall deadline and its own; `after:` holds a dependency back until those it names are
ready. Each dependency's retries are a tenacity `Retrying` built from waitfor.backoff.

The first attempt is made before tenacity is imported: a dependency that is ready at
once (the common case when a container restarts) needs no retry strategy, and importing
tenacity costs about 3x Python's own start-up (BENCHMARKS.md). A failed first attempt is
handed to the tenacity `Retrying` as its attempt 1, so the strategy sees every attempt.

The probes are built before the wait (build_probes): a URL or option that the driver
rejects is a config error then, exit 2, not a failed attempt every interval.
The engine only produces outcomes; what to do with them is the caller's business.
"""

from __future__ import annotations

import threading
import time

from waitfor.config.model import FAILED, READY, WAITING
from waitfor.probes.base import Broken, NotReady, Refused, describe
from waitfor.secrets import redact

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from waitfor.config.model import Config, Dependency
    from waitfor.probes.base import Probe

__all__ = ["FAILED", "READY", "WAITING", "Engine", "Outcome", "build_probes", "make_probe"]


class Outcome:
    """Where one dependency stands. (A plain class: dataclasses would import inspect.)"""

    __slots__ = ("attempts", "broken", "dep", "elapsed", "reason", "state")

    def __init__(self, dep: Dependency, state: str = WAITING, attempts: int = 0, elapsed: float = 0.0,
                 reason: str = "first attempt still running", broken: bool = False) -> None:
        self.dep, self.state, self.attempts, self.elapsed = dep, state, attempts, elapsed
        self.reason = reason  # the last error while waiting or failed; the detail once ready
        self.broken = broken

    def copy(self) -> Outcome:
        return Outcome(self.dep, self.state, self.attempts, self.elapsed, self.reason, self.broken)


def make_probe(dep: Dependency) -> Probe:
    """Build a dependency's probe (its driver imported now), inverted if asked; a driver's
    rejection of the URL or an option is a UsageError located at the dependency."""
    from waitfor.probes import table

    probe = table.build_probe(dep)
    return _inverted(probe, dep.kind) if dep.invert else probe


def build_probes(deps: Iterable[Dependency]) -> dict[str, Probe]:
    """The probes stage of the data flow: Config -> probes -> outcomes."""
    return {dep.name: make_probe(dep) for dep in deps}


def _inverted(probe: Probe, kind: str) -> Probe:
    still = "still exists" if kind == "file" else "still reachable"

    def inverted(timeout: float) -> str:
        try:
            probe(timeout)
        except NotReady as e:
            return f"gone ({describe(e)})"
        # Still there; asking again is as cheap as the probe itself, so retry fast.
        raise Refused(f"{still} (invert: true)")

    return inverted


def attempt(dep: Dependency, probe: Probe, timeout: float) -> str:
    """One bounded attempt. Any unexpected driver error counts as not ready, redacted."""
    try:
        return probe(max(timeout, 0.001)) or "ready"
    except Broken as e:
        raise Broken(redact(describe(e), dep.secrets)) from None
    except Refused as e:
        raise Refused(redact(describe(e), dep.secrets)) from None
    except Exception as e:  # noqa: BLE001 - a driver's own error type is still "not ready"
        raise NotReady(redact(describe(e), dep.secrets)) from None


class Engine:
    def __init__(
        self,
        cfg: Config,
        deps: Iterable[Dependency],
        *,
        probes: Mapping[str, Probe] | None = None,
        single_attempt: bool = False,
        on_change: Callable[[Outcome], None] | None = None,
        on_settled: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        cancel: Callable[[], None] | None = None,
    ) -> None:
        self.cfg, self.deps, self.single_attempt = cfg, tuple(deps), single_attempt
        self.probes = dict(probes or {})
        self._cancel_hook = cancel
        self.on_change = on_change or (lambda o: None)
        self.on_settled = on_settled or (lambda: None)
        self.clock = clock
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self.outcomes = {d.name: Outcome(d) for d in self.deps}
        self._settled = {d.name: threading.Event() for d in self.deps}
        self._lock = threading.Lock()
        self._left = len(self.deps)
        self.started = 0.0
        self.deadline: float | None = None  # monotonic time, or None: no overall deadline

    # -- public -------------------------------------------------------------------
    def start(self) -> Engine:
        self.started = self.clock()
        self.deadline = None if self.cfg.timeout is None else self.started + self.cfg.timeout
        if not self.deps:
            self.done.set()
            self.on_settled()
        for dep in self.deps:
            threading.Thread(target=self._run, args=(dep,), name=f"probe {dep.name}", daemon=True).start()
        return self

    def cancel(self) -> None:
        self.cancelled.set()
        for ev in self._settled.values():
            ev.set()
        if self._cancel_hook is not None:
            self._cancel_hook()
            return
        from waitfor.probes import table

        for kind in {d.kind for d in self.deps}:  # e.g. kill the command probes' programs
            table.load(kind).cancel()

    def results(self) -> list[Outcome]:
        with self._lock:
            return [o.copy() for o in self.outcomes.values()]

    # -- per dependency -------------------------------------------------------------
    def _deadline_for(self, dep: Dependency) -> float | None:
        """The earlier of the overall deadline and the dependency's own, both counted from
        the start (time spent waiting for `after:` counts too)."""
        own = None if dep.timeout is None else self.started + dep.timeout
        candidates = [d for d in (self.deadline, own) if d is not None]
        return min(candidates) if candidates else None

    def _run(self, dep: Dependency) -> None:
        try:
            if not self.single_attempt:
                deadline = self._deadline_for(dep)
                for name in dep.after:
                    remaining = None if deadline is None else max(0.0, deadline - self.clock())
                    if not self._settled[name].wait(remaining):
                        self._settle(dep, FAILED, f"not probed: still waiting for {name} (after:)", 0)
                        return
                    if self.cancelled.is_set():
                        return
                    blocker = self.outcomes[name]
                    if blocker.state != READY:
                        self._settle(dep, FAILED, f"not probed: {name} (after:) is not ready", 0)
                        return
            self._wait_for(dep)
        except BaseException as e:  # noqa: BLE001 - a thread must settle, whatever happens
            self._settle(dep, FAILED, redact(f"internal error: {describe(e)}", dep.secrets), 0, broken=True)

    def _wait_for(self, dep: Dependency) -> None:
        probe = self.probes.get(dep.name) or make_probe(dep)
        deadline = self._deadline_for(dep)
        start = self.clock()
        attempts = 0

        def one_attempt() -> str:
            nonlocal attempts
            attempts += 1
            remaining = self.cfg.attempt_timeout if deadline is None else deadline - self.clock()
            budget = min(self.cfg.attempt_timeout, remaining)
            try:
                return attempt(dep, probe, budget)
            except NotReady as e:
                previous = self.outcomes[dep.name].reason
                if budget < 0.1 and attempts > 1 and "timed out" in str(e):
                    # The last attempt, squeezed against the deadline, timed out: the reason
                    # before it ("HTTP 503", "starting up") says more.
                    raise NotReady(previous) from None
                self._note(dep, str(e), attempts)
                raise

        try:
            try:
                detail = one_attempt()
            except NotReady as first:
                if self.single_attempt:
                    raise
                detail = self._retry(one_attempt, first, deadline)
        except NotReady as e:
            if not self.cancelled.is_set():
                self._settle(dep, FAILED, str(e), attempts, elapsed=self.clock() - start)
            return
        except Broken as e:
            self._settle(dep, FAILED, str(e), attempts, broken=True, elapsed=self.clock() - start)
            return
        self._settle(dep, READY, detail, attempts, elapsed=self.clock() - start)

    def _retry(self, one_attempt: Callable[[], str], first: NotReady, deadline: float | None) -> str:
        """Attempts 2, 3, ... under tenacity; attempt 1's failure is replayed as its first."""
        from tenacity import Retrying, retry_if_exception_type, stop_when_event_set

        from waitfor.wait import backoff

        replay = [first]

        def attempt_or_replay() -> str:
            if replay:
                raise replay.pop()
            return one_attempt()

        retrying = Retrying(
            stop=backoff.stop_at_deadline(deadline, self.clock) | stop_when_event_set(self.cancelled),
            wait=backoff.wait_until_deadline(
                backoff.strategy(self.cfg.interval, self.cfg.max_interval), deadline, self.clock
            ),
            sleep=self._sleep,
            retry=retry_if_exception_type(NotReady),
            reraise=True,
        )
        return retrying(attempt_or_replay)

    def _sleep(self, seconds: float) -> None:
        """tenacity's sleep: an Event wait, so that cancel() ends every sleep at once."""
        self.cancelled.wait(seconds)

    def _note(self, dep: Dependency, reason: str, attempts: int) -> None:
        with self._lock:
            o = self.outcomes[dep.name]
            first = o.attempts == 0
            changed = o.reason != reason
            o.reason, o.attempts = reason, attempts
        if first or changed:
            self.on_change(o.copy())

    def _settle(self, dep: Dependency, state: str, reason: str, attempts: int, *, broken: bool = False,
                elapsed: float = 0.0) -> None:
        with self._lock:
            o = self.outcomes[dep.name]
            o.state, o.reason, o.broken = state, reason, broken
            o.attempts, o.elapsed = max(o.attempts, attempts), elapsed
            snapshot = o.copy()
            self._left -= 1
            last = self._left == 0
        self._settled[dep.name].set()
        self.on_change(snapshot)
        if last:
            self.done.set()
            self.on_settled()
