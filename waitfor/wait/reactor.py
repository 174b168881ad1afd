"""The scheduler's event loop (waitfor.wait.engine runs every dependency on it): one
thread, a `poll()` loop, a heap of timers, a wake-up pair, and a small pool of threads for
the attempts that block. It knows jobs only as objects with a `token` (bumped when an
attempt ends: its timers and late results no longer count) and a `busy` flag (a pool
thread is on its work); what a timer or a result means is the engine's business.

One thread for every dependency (issue 12: a thread per dependency cost ~110 us of CPU
per probe and a thread each); the pool (`POOL_SIZE` threads, started only when needed)
never grows with the number of dependencies.
"""

from __future__ import annotations

import heapq
import select
import socket
import threading
from collections import deque

from waitfor.probes.limits import local_limit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Job = Any  # an object with `token: int` and `busy: bool` (the engine's _Job)

# Threads for attempts that block (lookups, drivers, commands, files). A slow driver holds
# one of them for at most its attempt timeout; tcp dependencies never need one.
POOL_SIZE = 4

# Without a wake-up pair (out of fds), the loop looks for results this often.
WAKE_POLL = 0.05


class Pool:
    """A few threads for attempts that block. Started one at a time, only while work waits
    for a free thread, up to `size`; each posts `(job, token, result)` back to the loop.
    (Hand-rolled rather than concurrent.futures, whose import pulls in logging.)"""

    def __init__(self, size: int, post: Callable[[tuple[Job, int, object]], None]) -> None:
        self.size, self.post = size, post
        self.work: deque[tuple[Job, int, Callable[[], object]] | None] = deque()
        self.ready = threading.Condition(threading.Lock())
        self.threads: list[threading.Thread] = []
        self.idle = 0

    def submit(self, job: Job, token: int, fn: Callable[[], object]) -> None:
        with self.ready:
            self.work.append((job, token, fn))
            job.busy = True
            # a thread being woken still counts as idle: start one while work outnumbers them
            if len(self.work) > self.idle and len(self.threads) < self.size:
                t = threading.Thread(target=self._worker, name=f"probe pool {len(self.threads) + 1}",
                                     daemon=True)
                try:
                    t.start()
                except RuntimeError as e:  # no thread to be had (a pids limit): issue 16 D15
                    if self.threads:  # the running ones will take the work in turn
                        return
                    self.work.pop()
                    job.busy = False
                    raise local_limit(e) or e from None
                self.threads.append(t)
            else:
                self.ready.notify()

    def close(self) -> None:
        with self.ready:
            self.work.clear()
            self.work.extend([None] * len(self.threads))
            self.ready.notify_all()

    def _worker(self) -> None:
        while True:
            with self.ready:
                while not self.work:
                    self.idle += 1
                    self.ready.wait()
                    self.idle -= 1
                item = self.work.popleft()
            if item is None:
                return
            job, token, fn = item
            if token != job.token:  # its attempt already ended (timed out, settled): skip it
                job.busy = False
                continue
            try:
                result: object = fn()
            except BaseException as e:  # noqa: BLE001 - handed to the loop, which settles it
                result = e
            job.busy = False
            self.post((job, token, result))


class Reactor:
    """The loop: `open()` (its poll object and wake-up pair), `at()` timers, `submit()`
    blocking work to the pool, `inflight` deadlines, then `run()` in the scheduler thread
    until the engine has nothing left or is cancelled. Its state is touched only by that
    thread (and by the caller's before it starts); results arrive through `post()`."""

    def __init__(self, pool_size: int, clock: Callable[[], float], cancelled: threading.Event) -> None:
        self.clock, self.cancelled = clock, cancelled
        self.timers: list[tuple[float, int, str, Job, int]] = []
        self._seq = 0
        self.now = 0.0  # when this turn of the loop began
        self.results: deque[tuple[Job, int, object]] = deque()
        # loop-side steps in flight (connects, lookups) -> the attempt's deadline; kept out of
        # the heap, where a timer for every attempt would mostly go stale
        self.inflight: dict[Job, float] = {}
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self.pool = Pool(pool_size, self.post)

    def open(self) -> select.poll:
        """The poll object and the wake-up pair, before the first attempts can take every
        fd (issue 16 D14: connects in flight under a small `ulimit -n`). select.poll rather
        than the selectors module (1 ms of start-up): few sockets are in flight at once,
        and poll() is POSIX."""
        self.poll = select.poll()
        self._open_wake()
        return self.poll

    def at(self, when: float, what: str, job: Job) -> None:
        self._seq += 1
        heapq.heappush(self.timers, (when, self._seq, what, job, job.token))

    def submit(self, job: Job, fn: Callable[[], object]) -> None:
        self.pool.submit(job, job.token, fn)

    def post(self, item: tuple[Job, int, object]) -> None:
        """From a pool thread: hand a result to the loop and wake it."""
        self.results.append(item)
        self.wake()

    def wake(self) -> None:
        w = self._wake_w
        if w is None:
            return  # not started, or no pair (the loop polls for results then)
        try:
            # MSG_NOSIGNAL: the loop may have closed the other end, and the supervisor runs
            # with SIGPIPE at its default (it would kill waitfor, exit 141)
            w.send(b"\0", socket.MSG_NOSIGNAL)
        except OSError:  # full (the loop is awake anyway) or closed (the loop has ended)
            pass

    def run(self, pending: Callable[[], bool], guard: Callable[..., None],
            on_events: Callable[[list[tuple[int, int]]], None],
            on_result: Callable[[Job, object], None], on_timer: Callable[[Job, str], None]) -> None:
        """Turn until nothing is `pending()` or cancelled: each turn hands the poll events
        (the wake-up pair's taken out), then the pool's results, then the expired
        `inflight` steps (as "timeout" timers), then the timers due; each result and timer
        as `guard(job, on_result or on_timer, job, ...)`."""
        if self._wake_r is not None:
            self.poll.register(self._wake_r, select.POLLIN)
        try:
            while not self.cancelled.is_set() and pending():
                on_events(self._wait())
                while self.results:
                    job, token, result = self.results.popleft()
                    if token == job.token and not self.cancelled.is_set():
                        guard(job, on_result, job, result)
                now = self.now
                for job in [j for j, t in self.inflight.items() if t <= now]:
                    guard(job, on_timer, job, "timeout")
                pushed = self._seq  # a timer set in this pass waits for the next poll()
                timers = self.timers
                while timers and timers[0][0] <= now and timers[0][1] <= pushed and not self.cancelled.is_set():
                    _, _, what, job, token = heapq.heappop(timers)
                    if token == job.token:
                        guard(job, on_timer, job, what)
        finally:
            self.close()

    def close(self) -> None:
        self.pool.close()
        r, w = self._wake_r, self._wake_w
        self._wake_r = self._wake_w = None
        for sock in (r, w):
            if sock is not None:
                sock.close()

    def _wait(self) -> list[tuple[int, int]]:
        """One poll(): until the next timer or in-flight deadline, a result, or cancel."""
        next_at = min(self.inflight.values(), default=None)
        if self.timers and (next_at is None or self.timers[0][0] < next_at):
            next_at = self.timers[0][0]
        timeout = None if next_at is None else max(0.0, next_at - self.clock())
        if self._wake_r is None and not self._open_wake(register=True):
            # no wake-up pair (out of fds): look for results and cancel this often
            timeout = WAKE_POLL if timeout is None else min(timeout, WAKE_POLL)
        wake_fd = -1 if self._wake_r is None else self._wake_r.fileno()
        # poll() takes milliseconds: round up, so that a timer is never woken for early
        events = self.poll.poll(None if timeout is None else -(-timeout * 1000 // 1))
        self.now = self.clock()
        for i, (fd, _) in enumerate(events):
            if fd == wake_fd:
                self._drain_wake()
                del events[i]
                break
        return events

    def _open_wake(self, register: bool = False) -> bool:
        """The loop's wake-up pair (pool results, cancel). Out of fds, the loop polls every
        WAKE_POLL s instead and tries again at each turn: a local limit, as an attempt's."""
        try:
            r, w = socket.socketpair()
        except OSError as e:
            if local_limit(e) is None:
                raise
            return False
        w.setblocking(False)
        if register:
            self.poll.register(r, select.POLLIN)
        self._wake_r, self._wake_w = r, w
        return True

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096, socket.MSG_DONTWAIT):
                pass
        except OSError:
            pass
