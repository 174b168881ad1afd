"""`waitfor check` and `waitfor health`: one attempt per check, all in parallel, each
bounded by the attempt timeout, no retries. Exit 0 when all are ready, 1 otherwise
(never 2: Docker's HEALTHCHECK reserves it). The output stays far below the 4096 bytes
that Docker keeps of a health check's output."""

from __future__ import annotations

from waitfor import exitcodes
from waitfor.config.model import READY, WAITING
from waitfor.output import Log, clean, cut, masked, write_stdout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from waitfor.config.model import Config, Dependency

MAX_OUTPUT = 3000  # bytes; Docker keeps 4096 (daemon/health.go maxOutputLen)


def supervisor_view(cfg: Config, own: bool = False) -> tuple[bool, list[str]] | None:
    """The (ok, lines) a supervisor in this container reports, or None to probe instead.

    Only a supervisor of the same checks answers (issue 10 A2): the state file records a
    keyed hash of its dependencies and health checks (state.identity), and a `health` with
    another config, or another WAITFOR_TARGETS, probes by itself. A supervisor that is
    still waiting is unhealthy, whatever the checks say. `own`: `health` was given no
    checks at all (no -c, WAITFOR_CONFIG nor targets), so it asks about the supervisor's
    own config (issue 16 E19), whatever its identity. A running one is trusted only
    while its runtime watch keeps the state fresh (its own watch interval, written in the
    state: the watch may have been turned on by a flag of `run` only).
    """
    import hmac
    import time

    from waitfor.supervise import state as st

    state = st.read_live_state(st.state_path(), max_age=float("inf"))
    if state is None:
        return None
    mine = st.identity(cfg, state["salt"])  # salt and identity: checked hex strings (st.validate)
    if not own and not hmac.compare_digest(mine.encode(), state["identity"].encode()):
        return None  # another config's supervisor: its view says nothing about these checks
    if state["phase"] == WAITING:
        failing = ", ".join(state["failing"]) or "dependencies"
        return False, [f"FAIL waiting for {failing} (supervisor pid {state['pid']})"]
    interval = state["watch_interval"]
    if state["phase"] != st.RUNNING or not interval:
        return None  # nothing keeps its view fresh
    if time.time() - state["updated"] > 2 * interval + cfg.attempt_timeout + 1:
        return None
    lines = [f"{'ok' if c['ok'] else 'FAIL'} {c['name']}: {c['reason']}" for c in state["checks"]]
    return bool(state["ready"]), lines or ["ok"]


def run_health(cfg: Config, log: Log, checks: Sequence[Dependency], use_supervisor: bool = False) -> int:
    """`check` (use_supervisor False) and `health`. `health` with explicit targets passes
    use_supervisor False too: what the user names on the command line is always probed."""
    view = supervisor_view(cfg, own=not checks) if use_supervisor else None
    if view is not None:
        ok, lines = view
        _print(cfg, ok, lines)
        return exitcodes.OK if ok else exitcodes.NOT_READY
    if not checks:
        # Nothing to check is not "healthy": a HEALTHCHECK that forgot its config would
        # otherwise pass forever (issue 10 A1).
        what = "health checks or dependencies" if use_supervisor else "dependencies"
        _print(cfg, False, [f"FAIL nothing to check: no {what} (give targets, -c FILE or WAITFOR_CONFIG)"])
        return exitcodes.NOT_READY
    from waitfor.wait import loop as waiting

    try:
        results = waiting.wait_for(cfg, checks, _Silent(), single_attempt=True, fail_fast=False)
    except waiting.Stopped as s:
        return exitcodes.from_signal(s.signum)
    ok = all(o.state == READY for o in results)
    lines = [f"{'ok' if o.state == READY else 'FAIL'} {o.dep.name}: {cut(o.reason, 200, o.dep.secrets)}"
             for o in results]
    _print(cfg, ok, lines)
    return exitcodes.OK if ok else exitcodes.NOT_READY


def _print(cfg: Config, ok: bool, lines: list[str]) -> None:
    lines = [masked(line) for line in lines]  # before it is rendered and cut (issue 16 B5)
    if cfg.log_format == "json":
        import json

        text = json.dumps({"healthy": ok, "checks": lines})
    else:
        text = "\n".join(lines)
    text = "\n".join(clean(line) for line in text.split("\n"))
    if len(text.encode()) > MAX_OUTPUT:
        text = text.encode()[:MAX_OUTPUT].decode(errors="ignore") + "\n..."
    if cfg.verbosity >= 0 or cfg.log_format == "json":
        write_stdout(text + "\n")


class _Silent(Log):
    """Health output is the summary above, not the wait's progress lines."""

    def emit(self, level: str, msg: str, **fields: object) -> None:
        pass
