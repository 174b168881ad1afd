"""The main thread's side of the wait: start the engine, then sleep in sigtimedwait()
until the engine is done, the deadline passes, or a stop signal arrives.

Signals are blocked and waited for synchronously (as tini does), so no handler runs in a
probe thread and nothing is lost: worker threads inherit the blocked mask, and a worker
that settles a dependency wakes this thread with a thread-directed SIGCHLD.
"""

from __future__ import annotations

import threading
import time

from waitfor import exitcodes
from waitfor.config.durations import format_duration
from waitfor.config.model import FAILED, READY, WAITING
from waitfor.signals import STOP_SIGNALS, signal, signal_name  # signal: the C module (start-up time)
from waitfor.wait.engine import Engine

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from waitfor.config.model import Config, Dependency
    from waitfor.output import Log
    from waitfor.probes.base import Probe
    from waitfor.wait.engine import Outcome

PROGRESS_EVERY = 5.0
# At the deadline, how long the main thread waits for the scheduler's own settling (a
# driver that ignores its attempt's bound is not waited for longer).
SETTLE_GRACE = 0.25


class Stopped(Exception):
    """A stop signal (TERM, INT, HUP, QUIT) ended the wait: exit 128+N."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def label(dep: Dependency) -> str:
    """A name given with `name:` and the (masked) target; a default name is the target."""
    return f"{dep.name} ({dep.display})" if dep.named else dep.name


def _reporter(log: Log) -> Callable[[Outcome], None]:
    def report(o: Outcome) -> None:
        if o.state == READY:
            tries = "1 attempt" if o.attempts == 1 else f"{o.attempts} attempts"
            log.info(f"{o.dep.name}: ready after {format_duration(o.elapsed)} ({tries}): {o.reason}",
                     dep=o.dep.name, target=o.dep.display, state=READY, attempts=o.attempts)
        elif o.state == FAILED:
            pass  # summarize_failure says it, once
        elif o.attempts <= 1:
            log.info(f"{label(o.dep)}: waiting: {o.reason}", dep=o.dep.name,
                     target=o.dep.display, state=WAITING)
        else:
            log.debug(f"{o.dep.name}: still not ready: {o.reason}", dep=o.dep.name, state=WAITING,
                      attempts=o.attempts)

    return report


def wait_for(cfg: Config, deps: Iterable[Dependency], log: Log, *, probes: Mapping[str, Probe] | None = None,
             single_attempt: bool = False, fail_fast: bool = True,
             observe: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run the engine to the end. Returns the outcomes; raises Stopped on a stop signal."""
    main_thread = threading.get_ident()
    blocked = STOP_SIGNALS | {signal.SIGCHLD}
    # Block before any thread starts, so every worker inherits the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    report = _reporter(log)

    def on_change(o: Outcome) -> None:
        report(o)
        if observe is not None:
            observe(o)
        if o.state != WAITING and threading.get_ident() != main_thread:
            # (the engine makes the first attempts in this thread: no need to wake it then)
            signal.pthread_kill(main_thread, signal.SIGCHLD)

    engine = Engine(cfg, deps, probes=probes, single_attempt=single_attempt, on_change=on_change).start()
    next_progress = engine.started + PROGRESS_EVERY
    while not engine.done.is_set():
        now = time.monotonic()
        if fail_fast and any(o.state == FAILED for o in engine.results()):
            break
        if engine.deadline is not None and now >= engine.deadline:
            # The scheduler settles each dependency at its deadline too (its last attempt,
            # those that `after:` held back): give it that moment, so that the report says
            # why rather than what was under way (issue 16 D20).
            engine.done.wait(SETTLE_GRACE)
            break
        if now >= next_progress:
            _progress(engine, log)
            next_progress = now + PROGRESS_EVERY
        wake_at = next_progress
        if engine.deadline is not None:
            wake_at = min(wake_at, engine.deadline)
        info = signal.sigtimedwait(blocked, max(wake_at - now, 0.001))
        if info is not None and info.si_signo in STOP_SIGNALS:
            engine.cancel()
            name = signal_name(info.si_signo)
            log.warning(f"received {name} while waiting; stopping", signal=name)
            raise Stopped(info.si_signo)
    engine.cancel()
    return engine.results()


def _progress(engine: Engine, log: Log) -> None:
    waiting = [o for o in engine.results() if o.state == WAITING]
    if not waiting:
        return
    elapsed = format_duration(time.monotonic() - engine.started)
    summary = "; ".join(f"{o.dep.name}: {o.reason}" for o in waiting[:10])
    more = f" (+{len(waiting) - 10} more)" if len(waiting) > 10 else ""
    log.info(f"still waiting after {elapsed} for {len(waiting)}/{len(engine.deps)}: {summary}{more}",
             waiting=[o.dep.name for o in waiting])


def summarize_failure(cfg: Config, results: list[Outcome], log: Log) -> int:
    """Say what was not ready and why; return the exit code for it."""
    bad = [o for o in results if o.state != READY]
    timeout = format_duration(cfg.timeout) if cfg.timeout is not None else "no limit"
    for o in bad:
        what = "cannot become ready" if o.broken else "not ready"
        log.error(f"{what}: {label(o.dep)}: {o.reason}", dep=o.dep.name,
                  target=o.dep.display, attempts=o.attempts)
    own = [o for o in bad if o.state == FAILED and not o.broken and o.dep.timeout]
    if any(o.broken for o in bad):
        why = "one cannot become ready"
    elif own:
        why = f"{own[0].dep.name}: its own timeout {format_duration(own[0].dep.timeout or 0)}"
    else:
        why = f"timeout {timeout}"
    log.error(f"gave up: {len(bad)} of {len(results)} dependencies not ready ({why})",
              not_ready=[o.dep.name for o in bad])
    return exitcodes.TIMEOUT


def wait(cfg: Config, log: Log, probes: Mapping[str, Probe],
         observe: Callable[[Outcome], None] | None = None) -> int:
    """The wait of `run` and `wait`: every dependency ready (0), or the exit code of why not."""
    if not cfg.dependencies:
        return exitcodes.OK
    try:
        results = wait_for(cfg, cfg.dependencies, log, probes=probes, observe=observe)
    except Stopped as s:
        return exitcodes.from_signal(s.signum)
    if all(o.state == READY for o in results):
        log.info("all dependencies ready" if len(results) > 1 else "the dependency is ready")
        return exitcodes.OK
    return summarize_failure(cfg, results, log)
