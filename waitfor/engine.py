"""The waiting engine: every dependency waits in its own thread, in parallel, under the
overall deadline and its own; `after:` holds a dependency back until those it names are
ready. Each dependency's retries are a tenacity `Retrying` built from waitfor.backoff.

The first attempt is made before tenacity is imported: a dependency that is ready at
once (the common case when a container restarts) needs no retry strategy, and importing
tenacity costs about 3x Python's own start-up (BENCHMARKS.md). A failed first attempt is
handed to the tenacity `Retrying` as its attempt 1, so the strategy sees every attempt.

The engine only produces outcomes; what to do with them is the caller's business.
"""

import threading
import time

from waitfor.masking import redact
from waitfor.probes import table
from waitfor.probes.base import Broken, NotReady, Refused, describe

WAITING, READY, FAILED = "waiting", "ready", "failed"


class Outcome:
    """Where one dependency stands. (A plain class: dataclasses would import inspect.)"""

    __slots__ = ("dep", "state", "attempts", "elapsed", "reason", "broken")

    def __init__(self, dep, state=WAITING, attempts=0, elapsed=0.0,
                 reason="first attempt still running", broken=False):
        self.dep, self.state, self.attempts, self.elapsed = dep, state, attempts, elapsed
        self.reason = reason  # the last error while waiting or failed; the detail once ready
        self.broken = broken

    def copy(self) -> "Outcome":
        return Outcome(self.dep, self.state, self.attempts, self.elapsed, self.reason, self.broken)


def make_probe(dep):
    probe = table.module(dep.kind).probe_for(dep)
    return _inverted(probe) if dep.invert else probe


def _inverted(probe):
    def inverted(timeout: float):
        try:
            probe(timeout)
        except NotReady as e:
            return f"gone ({describe(e)})"
        # Still there; asking again is as cheap as the probe itself, so retry fast.
        raise Refused("still reachable (invert: true)")

    return inverted


def attempt(dep, probe, timeout: float) -> str:
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
        cfg,
        deps,
        *,
        single_attempt: bool = False,
        on_change=None,
        on_settled=None,
        clock=time.monotonic,
    ):
        self.cfg, self.deps, self.single_attempt = cfg, tuple(deps), single_attempt
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
        self.deadline = None  # monotonic time, or None: no overall deadline

    # -- public -------------------------------------------------------------------
    def start(self) -> "Engine":
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
        for kind in {d.kind for d in self.deps}:  # e.g. kill the command probes' programs
            stop = getattr(table.module(kind), "cancel", None)
            if stop is not None:
                stop()

    def results(self) -> list:
        with self._lock:
            return [o.copy() for o in self.outcomes.values()]

    # -- per dependency -------------------------------------------------------------
    def _deadline_for(self, dep):
        """The earlier of the overall deadline and the dependency's own, both counted from
        the start (time spent waiting for `after:` counts too)."""
        own = None if dep.timeout is None else self.started + dep.timeout
        candidates = [d for d in (self.deadline, own) if d is not None]
        return min(candidates) if candidates else None

    def _run(self, dep) -> None:
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

    def _wait_for(self, dep) -> None:
        probe = make_probe(dep)
        deadline = self._deadline_for(dep)
        start = self.clock()
        attempts = 0

        def one_attempt():
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

    def _retry(self, one_attempt, first: NotReady, deadline):
        """Attempts 2, 3, ... under tenacity; attempt 1's failure is replayed as its first."""
        from tenacity import Retrying, retry_if_exception_type, stop_when_event_set

        from waitfor import backoff

        replay = [first]

        def attempt_or_replay():
            if replay:
                raise replay.pop()
            return one_attempt()

        retrying = Retrying(
            stop=backoff.stop_at_deadline(deadline, self.clock) | stop_when_event_set(self.cancelled),
            wait=backoff.wait_until_deadline(
                backoff.strategy(self.cfg.interval, self.cfg.max_interval), deadline, self.clock
            ),
            sleep=self.cancelled.wait,
            retry=retry_if_exception_type(NotReady),
            reraise=True,
        )
        return retrying(attempt_or_replay)

    def _note(self, dep, reason: str, attempts: int) -> None:
        with self._lock:
            o = self.outcomes[dep.name]
            first = o.attempts == 0
            changed = o.reason != reason
            o.reason, o.attempts = reason, attempts
        if first or changed:
            self.on_change(o.copy())

    def _settle(self, dep, state, reason, attempts, *, broken=False, elapsed=0.0) -> None:
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
