"""`waitfor check` and `waitfor health`: one attempt per check, all in parallel, each
bounded by the attempt timeout, no retries. Exit 0 when all are ready, 1 otherwise
(never 2: Docker's HEALTHCHECK reserves it). The output stays far below the 4096 bytes
that Docker keeps of a health check's output."""

from waitfor import exitcodes
from waitfor.output import clean, write_stdout

MAX_OUTPUT = 3000  # bytes; Docker keeps 4096 (daemon/health.go maxOutputLen)


def supervisor_view(cfg):
    """The (ok, lines) a supervisor in this container reports, or None to probe instead.

    A supervisor that is still waiting is unhealthy, whatever the checks say. A running one
    is trusted only while its runtime watch keeps the state fresh (its own watch interval,
    written in the state: the watch may have been turned on by a flag of `run` only).
    """
    import time

    from waitfor.supervise import state as st

    state = st.read_live_state(st.state_path(), max_age=float("inf"))
    if state is None:
        return None
    try:
        if state["phase"] == st.WAITING:
            failing = ", ".join(state["failing"]) or "dependencies"
            return False, [f"FAIL waiting for {failing} (supervisor pid {state['pid']})"]
        interval = state.get("watch_interval")
        if state["phase"] != st.RUNNING or not interval:
            return None  # nothing keeps its view fresh
        if time.time() - state["updated"] > 2 * interval + cfg.attempt_timeout + 1:
            return None
        lines = [f"{'ok' if c['ok'] else 'FAIL'} {c['name']}: {c['reason']}" for c in state["checks"]]
        return bool(state["ready"]), lines or ["ok"]
    except (KeyError, TypeError):
        return None  # not a state file this version wrote


def run_health(cfg, log, checks, use_supervisor=False) -> int:
    view = supervisor_view(cfg) if use_supervisor else None
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
    ok = all(o.state == "ready" for o in results)
    lines = [f"{'ok' if o.state == 'ready' else 'FAIL'} {o.dep.name}: {o.reason[:200]}" for o in results]
    _print(cfg, ok, lines)
    return exitcodes.OK if ok else exitcodes.NOT_READY


def _print(cfg, ok, lines) -> None:
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


class _Silent:
    """Health output is the summary above, not the wait's progress lines."""

    def _ignore(self, *a, **k):
        pass

    debug = info = warning = error = _ignore
