"""When a dependency is asked again: the waiting policy (README "Waiting" and "Fleets").

One `Schedule` per wait answers it for every dependency, from tenacity's building blocks
(`wait_fixed`, `wait_exponential`) and a small jitter strategy of its own below. Each
dependency has two regimes, counted from its own first attempt:

- **The fast window** (`fast_window`, default 2 s): what one container wants, a
  dependency that comes up in the first moments noticed at once.
  `Refused` is asked again every `interval` plus up to a tenth of it at random (a port
  that opens is noticed ~26 ms later on average at the default 50 ms). `NotReady` backs
  off from `interval`, x1.6 per not-ready attempt (the refused ones before do not count),
  +-20 % at random, up to `max_interval`: gRPC's connection backoff (1.6x, 20 % jitter).
- **After it**: what a fleet needs, one attempt per `max_interval` (default 1 s) whatever
  the answer, on a fixed grid `anchor + k * period` whose anchor is drawn once at random
  (uniform over one period) when the first dependency of this waiter leaves its window.
  N waiters started together thus spread evenly over the period and stay spread: a fixed
  period at a random phase keeps each waiter in its own slot, where fresh jitter on every
  attempt would let them bunch up in some 100 ms bins of each second (AWS Architecture
  Blog, "Exponential Backoff And Jitter", measures the same for contending clients). Every
  dependency of one waiter shares the grid, so after the window waiting costs one wake-up
  a period, whatever their number.

Refused retries in the fast window share wake-ups: each takes a time in its window
[interval, interval + jitter] at which others run already, so ten closed ports cost one
wake-up per interval. Beyond CONNECT_RATE attempts a second in all, every refused retry
waits longer alike (the "stretch"), so that waiting on any number costs about the same CPU.
No retry is ever scheduled past the dependency's deadline: the last attempt is at it.
"""

from __future__ import annotations

import math
import random

from tenacity import RetryCallState, Retrying, wait_exponential, wait_fixed
from tenacity.wait import wait_base

from waitfor.probes.base import Refused

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.probes.base import NotReady

# A refused retry in the fast window waits `interval` plus up to this much of it, at
# random. (A tenth: a port that opens is noticed after half the mean wait, 26 ms at the
# default 50ms, and at most 20 times a second is asked; issue 12 measured 32 ms with a fifth.)
REFUSED_JITTER = 0.1
# Not-ready backoff in the fast window: gRPC's connection-backoff multiplier and jitter
# (https://github.com/grpc/grpc/blob/master/doc/connection-backoff.md).
MULTIPLIER = 1.6
NOT_READY_JITTER = 0.2

# At most this many refused attempts a second, all dependencies together: each waits its
# delay until more than CONNECT_RATE x interval are refused at once (100 at the default
# 50ms); beyond, each waits longer alike, so that waiting on any number costs about the same
# CPU (one refused loopback connect costs ~20 us, BENCHMARKS.md; 2,000 a second, ~4 % of a core).
CONNECT_RATE = 2000


class wait_scaled(wait_base):
    """`inner`'s wait times a factor drawn uniformly from [lo, hi] (multiplicative jitter,
    as gRPC's backoff), from an injectable random source."""

    def __init__(self, inner: wait_base, lo: float, hi: float, rng: random.Random) -> None:
        self.inner, self.lo, self.hi, self.rng = inner, lo, hi, rng

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.inner(retry_state) * self.rng.uniform(self.lo, self.hi)


class Tries:
    """One dependency's side of the schedule: when its window began, and its not-ready
    attempts in a tenacity RetryCallState (refused ones are not recorded in it)."""

    __slots__ = ("first", "refused", "slow", "state")

    def __init__(self, first: float) -> None:
        self.first = first  # its first attempt: the fast window counts from here
        self.state: RetryCallState | None = None
        self.refused = False  # its last attempt was refused (counted in Schedule)
        self.slow = False  # it has left its fast window


class Schedule:
    """The retry times of every dependency of one wait (one waiter)."""

    def __init__(self, interval: float, max_interval: float, fast_window: float, *,
                 rng: random.Random | None = None) -> None:
        self.interval, self.window = interval, fast_window
        self.period = max(max_interval, interval)
        self.rng = rng or random.Random()
        self.refused_wait = wait_scaled(wait_fixed(interval), 1.0, 1.0 + REFUSED_JITTER, self.rng)
        self.not_ready_wait = wait_scaled(
            wait_exponential(multiplier=interval, exp_base=MULTIPLIER, max=self.period),
            1.0 - NOT_READY_JITTER, 1.0 + NOT_READY_JITTER, self.rng)
        self.rate = CONNECT_RATE
        self.ticks: list[float] = []  # upcoming shared wake-ups of fast refused retries, ascending
        self.anchor: float | None = None  # the grid after the fast window (this waiter's phase)
        self.fast_refused = self.slow_refused = 0
        self._retrying = Retrying()

    # -- bookkeeping ------------------------------------------------------------------
    def _count(self, tries: Tries, refused: bool, slow: bool) -> None:
        if tries.refused:
            if tries.slow:
                self.slow_refused -= 1
            else:
                self.fast_refused -= 1
        tries.refused, tries.slow = refused, slow
        if refused:
            if slow:
                self.slow_refused += 1
            else:
                self.fast_refused += 1

    def forget(self, tries: Tries) -> None:
        """The dependency has settled: it no longer counts."""
        self._count(tries, False, tries.slow)

    def stretch(self) -> float:
        """How much longer every refused retry waits, to stay near CONNECT_RATE a second."""
        rate = self.fast_refused / self.interval + self.slow_refused / self.period
        return max(1.0, rate / self.rate)

    def _record(self, tries: Tries, exc: NotReady) -> RetryCallState:
        """One more not-ready attempt in the dependency's RetryCallState, as tenacity's
        own loop records it."""
        rs = tries.state
        if rs is None:
            rs = tries.state = RetryCallState(self._retrying, fn=None, args=(), kwargs={})
        else:
            rs.prepare_for_next_attempt()
        rs.set_exception((type(exc), exc, None))
        return rs

    # -- the answer -------------------------------------------------------------------
    def next_at(self, tries: Tries, exc: NotReady, now: float, began: float, deadline: float | None) -> float:
        """When to try again after `exc`: the attempt's answer came at `now`, in the turn of
        the scheduler that began at `began` (the same for every dependency answered in it,
        so that they can share the next)."""
        refused = isinstance(exc, Refused)
        end = tries.first + self.window
        rs = None if refused else self._record(tries, exc)
        if not tries.slow:
            at = self._fast(tries, rs, now, began, end, deadline)
            if at is not None:
                self._count(tries, refused, False)
                return at
        self._count(tries, refused, True)
        at = self._tick(max(end, now + self.interval))
        return at if deadline is None else min(at, deadline)

    def _fast(self, tries: Tries, rs: RetryCallState | None, now: float, began: float, end: float,
              deadline: float | None) -> float | None:
        """A retry time inside the fast window, or None once it would fall past the window."""
        if rs is not None:  # not ready: the backoff
            at = now + self.not_ready_wait(rs)
            if deadline is not None and at >= deadline:
                return deadline
            return at if at < end else None
        stretch = self.stretch()
        lo = began + self.interval * stretch
        if lo >= end:
            return None
        hi = min(began + self.interval * (1 + REFUSED_JITTER) * stretch, end)  # (the window's end is the grid's)
        if deadline is not None:
            hi = min(hi, deadline)
        ticks = self.ticks
        if ticks and ticks[0] < began:
            ticks[:] = [t for t in ticks if t >= began]
        for t in ticks:  # a wake-up of others in the window: any time in it is as fair a draw
            if lo <= t <= hi and t < end:
                return t
        own = min(max(lo, began + self.refused_wait(_NO_STATE) * stretch), hi)  # (a tick below lo is not shared)
        if own >= end:
            return None
        ticks.append(own)
        ticks.sort()
        return own

    def _tick(self, t: float) -> float:
        """The first time of this waiter's grid at or after `t` (the grid is drawn now if
        this is the first dependency to leave its window)."""
        period = self.period * self.stretch()
        if self.anchor is None:
            self.anchor = t + self.rng.uniform(0.0, period)
            return self.anchor
        return self.anchor + math.ceil((t - self.anchor) / period) * period


# fixed waits read nothing of the state they are given
_NO_STATE = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
