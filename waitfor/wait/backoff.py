"""Retry strategies, composed from tenacity's building blocks.

- `Refused` (nothing there yet) is retried at the fixed `interval` plus a little jitter:
  noticing a port that opens within ~interval is the point of waitfor, and a refused
  connect costs next to nothing. wait-for-it polls once a second.
- Any other `NotReady` backs off exponentially with jitter from `interval` up to
  `max_interval`, so a service that answers but is still starting is not hammered.
- The attempt budget is bounded by an absolute deadline and a cancel event
  (`stop_at_deadline(...) | stop_when_event_set(cancel)`), and sleeping is an
  `Event.wait`, so SIGTERM during the wait stops every dependency at once.
"""

from __future__ import annotations

import time

from tenacity import wait_exponential, wait_fixed, wait_random
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from waitfor.probes.base import Refused

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from tenacity import RetryCallState


class stop_at_deadline(stop_base):
    """Stop when an absolute `clock()` deadline has passed (None: never)."""

    def __init__(self, deadline: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline, self.clock = deadline, clock

    def __call__(self, retry_state: RetryCallState | None) -> bool:
        return self.deadline is not None and self.clock() >= self.deadline


class wait_by_reason(wait_base):
    """Pick the wait strategy by why the last attempt failed."""

    def __init__(self, refused: wait_base, other: wait_base) -> None:
        self.refused, self.other = refused, other

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return (self.refused if isinstance(exc, Refused) else self.other)(retry_state)


class wait_until_deadline(wait_base):
    """Never sleep past the deadline: the last attempt happens right at it."""

    def __init__(self, inner: wait_base, deadline: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner, self.deadline, self.clock = inner, deadline, clock

    def __call__(self, retry_state: RetryCallState) -> float:
        delay = self.inner(retry_state)
        if self.deadline is None:
            return delay
        return max(0.0, min(delay, self.deadline - self.clock()))


# A refused retry waits `interval` plus up to this much of it, at random. (A tenth: a port
# that opens is noticed after half the mean wait, 26 ms at the default 50ms, and at most 20
# times a second is asked; issue 12 measured 32 ms with a fifth.)
REFUSED_JITTER = 0.1


def strategy(interval: float, max_interval: float) -> wait_base:
    return wait_by_reason(
        refused=wait_fixed(interval) + wait_random(0, interval * REFUSED_JITTER),
        other=wait_exponential(multiplier=interval, max=max_interval) + wait_random(0, interval),
    )
