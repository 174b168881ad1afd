"""The waiting engine: every dependency waits in parallel, under the overall deadline and
its own; `after:` holds a dependency back until those it names are ready.

One scheduler thread runs every dependency, on the loop of waitfor.wait.reactor (a
`poll()` loop, a heap of timers, a wake-up pair, a small pool for the attempts that
block): a tcp dependency is probed there with a non-blocking connect (waitfor.wait.connect),
so waiting for 300 closed ports costs one thread. The first tcp/unix attempts are made in
the caller's thread before the scheduler starts: when every dependency is up already, as
when a container restarts, no thread is started at all. The engine itself keeps the
outcomes, the `after:` graph and the deadlines, and says what each timer and result means.

What waiting costs is mostly wake-ups and the kernel's side of each refused connect
(~20 us here, BENCHMARKS.md). When each dependency is asked again is the wait's
`Schedule` (waitfor.wait.backoff: the fast window, then one attempt per max_interval at
this waiter's random phase; refused retries share wake-ups and a connect rate). The
schedule, and tenacity with it, is made at the first retry: a dependency that is ready at
once (the common case when a container restarts) needs none, and importing tenacity
costs about 3x Python's own start-up (BENCHMARKS.md).

The probes are built before the wait (build_probes): a URL or option that the driver
rejects is a config error then, exit 2, not a failed attempt every interval.
The engine only produces outcomes; what to do with them is the caller's business.
"""

from __future__ import annotations

import socket
import threading
import time

from waitfor.config.model import FAILED, READY, WAITING
from waitfor.probes.base import Broken, NotReady, Refused, describe
from waitfor.probes.connect import timed_out
from waitfor.secrets import redact
from waitfor.wait.build import build_probes, make_probe
from waitfor.wait.connect import Connects, accepted_detail, target_of
from waitfor.wait.reactor import POOL_SIZE, Reactor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Mapping

    from waitfor.config.model import Config, Dependency
    from waitfor.probes.base import Probe
    from waitfor.wait.backoff import Schedule, Tries

__all__ = ["FAILED", "POOL_SIZE", "READY", "WAITING", "Engine", "Outcome", "build_probes", "make_probe"]

# An attempt that ends this close to its deadline is the last one (poll() counts in
# milliseconds: asking again a few ms before the deadline would only burst).
SLACK = 0.001


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


def attempt(dep: Dependency, probe: Probe, timeout: float) -> str:
    """One bounded attempt. Any unexpected driver error counts as not ready, redacted."""
    try:
        return probe(max(timeout, 0.001)) or READY  # a probe with nothing to add: its state is its reason
    except Broken as e:
        raise Broken(redact(describe(e), dep.secrets)) from None
    except Refused as e:
        raise Refused(redact(describe(e), dep.secrets)) from None
    except Exception as e:  # noqa: BLE001 - a driver's own error type is still "not ready"
        raise NotReady(redact(describe(e), dep.secrets)) from None



class _Job:
    """One dependency's place in the scheduler."""

    __slots__ = (
        "after_left",
        "attempts",
        "budget",
        "busy",
        "deadline",
        "dep",
        "fast",
        "noted",
        "phase",
        "precheck",
        "probe",
        "started",
        "target",
        "token",
        "tries",
    )

    def __init__(self, dep: Dependency, deadline: float | None) -> None:
        self.dep, self.deadline = dep, deadline
        self.probe: Probe | None = None  # built (or taken from those built) at its first attempt
        self.attempts = self.token = 0
        self.busy = False  # a pool thread is still on this job's work (e.g. a lookup that hangs)
        self.after_left = len(dep.after)
        self.budget = self.started = 0.0
        self.tries: Tries | None = None  # its side of the retry schedule, from its first retry
        # Where its attempts connect first (its kind's connect_target, parsed once), and
        # whether that connect is the whole answer (tcp, unix) or a driver kind's pre-check.
        self.target, self.fast = target_of(dep)
        self.precheck = self.target is not None and not self.fast
        self.phase = "connect"  # this attempt's step: "connect" (in the loop) or "probe" (pool)
        self.noted: NotReady | None = None  # the failure whose reason the outcome holds


class Engine:
    """Waits for `deps`: `start()`, then `done` is set once every one has settled (ready,
    failed, or held back by `after:` past its deadline); `results()` at any time,
    `on_change` for each change. It keeps the outcomes, the `after:` graph and the
    deadlines, and dispatches each dependency's attempts: the scheduler's connects
    (waitfor.wait.connect) or its probe in the pool, on the loop of waitfor.wait.reactor;
    when to ask again is the wait's Schedule (waitfor.wait.backoff)."""

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
        self.outcomes = {d.name: Outcome(d) if not d.after else
                         Outcome(d, reason=f"not probed yet: waiting for {', '.join(d.after)} (after:)")
                         for d in self.deps}
        self._lock = threading.Lock()
        self._left = len(self.deps)
        self._settling = 0  # _settle calls under way (one settles those it held back by after:)
        self.started = 0.0
        self.deadline: float | None = None  # monotonic time, or None: no overall deadline
        self._interval, self._attempt_timeout = cfg.interval, cfg.attempt_timeout  # (read per attempt)
        self._schedule: Schedule | None = None  # made at the first retry (tenacity imported then)
        self._jobs: dict[str, _Job] = {}
        # One attempt each (check, health, a watch round): every dependency's attempt must
        # run within the round's deadline, so the pool may grow to their number (bounded);
        # while waiting, POOL_SIZE threads take turns.
        from waitfor.probes import table

        blocking = sum(1 for d in self.deps if d.invert or not table.load(d.kind).READY_ON_CONNECT)
        size = min(max(POOL_SIZE, blocking), 64) if single_attempt else POOL_SIZE
        self._reactor = Reactor(size, clock, self.cancelled)  # the loop: timers, poll, the pool

    # -- public -------------------------------------------------------------------
    def start(self) -> Engine:
        self.started = self.clock()
        self.deadline = None if self.cfg.timeout is None else self.started + self.cfg.timeout
        if not self.deps:
            self.done.set()
            self.on_settled()
            return self
        # its poll object and wake-up pair, before the first attempts can take every fd
        self._connects = Connects(self._reactor.open(), self._connect_done, self._stagger, self.clock)
        self._reactor.now = self.started
        for dep in self.deps:
            job = self._jobs[dep.name] = _Job(dep, self._deadline_for(dep))
            if self.single_attempt or not job.after_left:
                self._reactor.at(self.started, "attempt", job)
            elif job.deadline is not None:
                self._reactor.at(job.deadline, "held", job)
        # The first attempts the loop would make itself (tcp and unix at an address that
        # needs no lookup) are made here, in the caller's thread: when every dependency is
        # ready at once, as when a container restarts, no thread is started at all.
        for job in list(self._jobs.values()):
            if (job.fast and job.target is not None and job.target.addrs is not None
                    and (self.single_attempt or not job.after_left)):
                self._guarded(job, self._timer, job, "attempt")  # its heap entry is stale now
        if not self._left:
            self._reactor.close()
            return self
        threading.Thread(target=self._loop, name="waitfor scheduler", daemon=True).start()
        return self

    def cancel(self) -> None:
        self.cancelled.set()
        self._reactor.wake()
        if self._cancel_hook is not None:
            self._cancel_hook()
            return
        from waitfor.probes import table

        for kind in {d.kind for d in self.deps}:  # e.g. kill the command probes' programs
            table.load(kind).cancel()

    def results(self) -> list[Outcome]:
        with self._lock:
            return [o.copy() for o in self.outcomes.values()]

    # -- the scheduler loop (waitfor.wait.reactor) ----------------------------------------
    def _loop(self) -> None:
        try:
            self._reactor.run(lambda: bool(self._left), self._guarded, self._events, self._pool_result,
                              self._timer)
        finally:
            for job in self._jobs.values():
                self._drop_conn(job)

    def _events(self, events: list[tuple[int, int]]) -> None:
        """poll() events: the scheduler's connects in flight."""
        connects = self._connects
        connects.stale.clear()
        for fd, _ in events:
            if fd in connects.polled and fd not in connects.stale:
                job = connects.polled[fd][0]
                assert isinstance(job, _Job)
                self._guarded(job, connects.ready, fd)

    def _guarded(self, job: _Job, fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except NotReady as e:  # a local limit met by the loop itself (no pool thread): retried
            self._drop_conn(job)
            self._finish(job, e)
        except BaseException as e:  # noqa: BLE001 - a dependency must settle, whatever happens
            self._drop_conn(job)
            job.token += 1
            self._settle(job.dep, FAILED, redact(f"internal error: {describe(e)}", job.dep.secrets),
                         job.attempts, broken=True)

    def _timer(self, job: _Job, what: str) -> None:
        """What a timer due on the loop means: an attempt to begin, an attempt's deadline
        (a connect or lookup in flight), the next address of a race, `after:` past its deadline."""
        if what == "attempt":
            self._begin(job)
        elif what == "timeout":  # the attempt's deadline, for a connect or lookup in flight
            addrs = [] if job.target is None else self._connects.drop(job.target)
            if addrs:
                self._finish(job, NotReady(f"connect timed out ({timed_out(addrs)})"))
            else:
                job.token += 1  # a late lookup result is dropped
                self._finish(job, NotReady(f"resolving {self._host(job)} timed out after {job.budget:.3g}s"))
        elif what == "stagger":  # the next address joins the race (RFC 8305's attempt delay)
            if job.target is not None and job.target.conns:
                self._connects.next(job, job.target)
        elif what == "held":  # the deadline passed while `after:` held it back
            self._held(job)

    # -- one attempt ----------------------------------------------------------------
    def _begin(self, job: _Job) -> None:
        now = self.clock()
        if job.attempts == 0:
            job.started = now
            if not job.fast:
                job.probe = self.probes.get(job.dep.name) or make_probe(job.dep)
                now = self.clock()  # importing a driver is not the attempt's time
        if job.busy:
            # Its previous attempt still holds a pool thread (a lookup or driver that ignores
            # its timeout): queueing another would only pile up behind it and starve others.
            job.attempts += 1
            job.token += 1
            job.budget = 0.0
            previous = self.outcomes[job.dep.name]  # keep saying why it is not ready yet
            why = previous.reason if previous.attempts else "the previous attempt is still running"
            return self._finish(job, NotReady(why))
        job.attempts += 1
        job.token += 1
        remaining = self._attempt_timeout if job.deadline is None else job.deadline - now
        job.budget = min(self._attempt_timeout, remaining)
        if not job.fast and not job.precheck:
            return self._run_probe(job, job.budget)
        job.phase = "connect"
        target = job.target
        assert target is not None
        target.last = None
        if target.addrs is None:
            self._reactor.inflight[job] = now + max(job.budget, 0.001)
            host, port = target.host, target.port
            self._reactor.submit(job, lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        else:
            self._connect(job, list(target.addrs))

    def _run_probe(self, job: _Job, budget: float) -> None:
        """The kind's own probe, in the pool."""
        job.phase = "probe"
        dep, probe = job.dep, job.probe
        assert probe is not None
        self._reactor.submit(job, lambda: attempt(dep, probe, budget))

    def _pool_result(self, job: _Job, result: object) -> None:
        if job.phase == "probe":
            if isinstance(result, BaseException):
                if isinstance(result, Refused) and job.target is not None:
                    job.precheck = True  # nothing listens again: back to the scheduler's connect
                self._finish(job, result)
            else:
                self._finish(job, None, str(result))
        elif isinstance(result, socket.gaierror):
            self._finish(job, Refused(f"cannot resolve {self._host(job)}: {result.strerror}"))
        elif isinstance(result, BaseException):
            self._finish(job, NotReady(f"cannot resolve {self._host(job)}: {describe(result)}"))
        else:
            assert isinstance(result, list)
            self._connect(job, [(family, addr) for family, _, _, _, addr in result])

    def _connect(self, job: _Job, addrs: list[tuple]) -> None:
        assert job.target is not None
        # the attempt's deadline (kept if a lookup set it); popped again when it ends at once
        deadline = self._reactor.inflight.setdefault(job, self.clock() + max(job.budget, 0.001))
        self._connects.start(job, job.target, addrs, deadline)

    def _stagger(self, job: Hashable, when: float) -> None:
        assert isinstance(job, _Job)
        self._reactor.at(when, "stagger", job)

    def _connect_done(self, job: Hashable, addr: tuple | str | None, exc: NotReady | None) -> None:
        assert isinstance(job, _Job)
        if addr is None:
            return self._finish(job, exc)
        if job.fast:
            return self._finish(job, None, accepted_detail(addr))
        # a driver kind's pre-check: something listens now; the probe gets what is left,
        # and makes its own (one) connection: the scheduler's is closed
        deadline = self._reactor.inflight.pop(job, None)  # None: it connected at once
        left = job.budget if deadline is None else deadline - self.clock()
        job.precheck = False
        # A quick connect (a few ms, as over loopback or a pod network) is not taken from the
        # probe, whose reason then names the attempt timeout as set ("within 1s"); a slow
        # one is, so the attempt still ends near its deadline.
        self._run_probe(job, job.budget if job.budget - left < 0.05 else max(left, 0.001))

    @staticmethod
    def _host(job: _Job) -> str:
        return "" if job.target is None else job.target.host

    def _drop_conn(self, job: _Job) -> None:
        if job.target is not None:
            self._connects.drop(job.target)

    # -- after an attempt ---------------------------------------------------------------
    def _finish(self, job: _Job, exc: BaseException | None, detail: str = "") -> None:
        """The attempt is over: settle, or ask the strategy when to try again."""
        job.token += 1  # its timers and late results no longer count
        self._reactor.inflight.pop(job, None)
        dep = job.dep
        now = self.clock()
        elapsed = now - job.started
        if exc is None:
            return self._settle(dep, READY, detail or READY, job.attempts, elapsed=elapsed)
        if isinstance(exc, Broken):
            return self._settle(dep, FAILED, redact(describe(exc), dep.secrets), job.attempts, broken=True,
                                elapsed=elapsed)
        if not isinstance(exc, NotReady):  # a pool attempt's unexpected error: not ready
            exc = NotReady(redact(describe(exc), dep.secrets))
        if exc is job.noted:
            # The same failure as the last attempt (a closed port, again; see _connect_error):
            # only the count changes. (One attribute, written by this thread only: results()
            # copies it under the lock.)
            o = self.outcomes[dep.name]
            o.attempts, reason = job.attempts, o.reason
        else:
            reason = str(exc)
            if job.budget < 0.1 and job.attempts > 1 and "timed out" in reason:
                # The last attempt, squeezed against the deadline, timed out: the reason
                # before it ("HTTP 503", "starting up") says more.
                reason = self.outcomes[dep.name].reason
            else:
                self._note(dep, reason, job.attempts)
                job.noted = exc
        if self.single_attempt or (job.deadline is not None and now >= job.deadline - SLACK):
            return self._settle(dep, FAILED, reason, job.attempts, elapsed=elapsed)
        self._reactor.at(self._retry_at(job, now, exc), "attempt", job)

    def _retry_at(self, job: _Job, now: float, exc: NotReady) -> float:
        """When to try again: the wait's Schedule says (waitfor.wait.backoff)."""
        schedule = self._schedule
        if schedule is None:
            try:
                from waitfor.wait.backoff import Schedule
            except Exception:  # noqa: BLE001 - OSError, ImportError, or the AttributeError of a
                # half-imported tenacity: out of fds (EMFILE) while importing the schedule is a
                # local resource limit, not the dependency's fault; try again after one
                # interval (issue 10 B7).
                return now + self._interval
            cfg = self.cfg
            schedule = self._schedule = Schedule(cfg.interval, cfg.max_interval, cfg.fast_window)
        if job.tries is None:
            from waitfor.wait.backoff import Tries

            job.tries = Tries(job.started)
        return schedule.next_at(job.tries, exc, now, self._reactor.now, job.deadline)

    # -- per dependency -------------------------------------------------------------
    def _held(self, job: _Job) -> None:
        """Its deadline passed while `after:` held it back: say for which dependency."""
        name = next((n for n in job.dep.after if self.outcomes[n].state == WAITING), job.dep.after[0])
        other = self._jobs[name].deadline
        if other is not None and job.deadline is not None and other <= job.deadline:
            # it ends now too (its last attempt may still be in this turn): not ready
            self._settle(job.dep, FAILED, f"not probed: {name} (after:) is not ready", 0)
        else:
            self._settle(job.dep, FAILED, f"not probed: still waiting for {name} (after:)", 0)

    def _deadline_for(self, dep: Dependency) -> float | None:
        """The earlier of the overall deadline and the dependency's own, both counted from
        the start (time spent waiting for `after:` counts too)."""
        own = None if dep.timeout is None else self.started + dep.timeout
        candidates = [d for d in (self.deadline, own) if d is not None]
        return min(candidates) if candidates else None

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
            if o.state != WAITING:
                return
            o.state, o.reason, o.broken = state, reason, broken
            o.attempts, o.elapsed = max(o.attempts, attempts), elapsed
            snapshot = o.copy()
            self._left -= 1
        job = self._jobs[dep.name]
        job.token += 1
        self._reactor.inflight.pop(job, None)
        self._drop_conn(job)
        if job.tries is not None and self._schedule is not None:
            self._schedule.forget(job.tries)
        self._settling += 1
        try:
            # Those it holds back by `after:` first: whoever sees this outcome (the main
            # thread, woken by on_change) sees theirs settled too (issue 16 D20).
            if not self.single_attempt:
                self._release(dep.name, state)
        finally:
            try:
                self.on_change(snapshot)
            finally:  # a failing observer (a log write, the state file) must not hang the wait
                self._settling -= 1
                if not self._settling and not self._left and not self.done.is_set():
                    self.done.set()
                    self.on_settled()

    def _release(self, name: str, state: str) -> None:
        """`after:`: a settled dependency lets those that wait for it go, or fails them."""
        for job in self._jobs.values():
            if name not in job.dep.after or self.outcomes[job.dep.name].state != WAITING:
                continue
            if state != READY:
                self._settle(job.dep, FAILED, f"not probed: {name} (after:) is not ready", 0)
                continue
            job.after_left -= 1
            if job.after_left == 0:
                job.token += 1  # its "held" timer
                self._reactor.at(self.clock(), "attempt", job)
