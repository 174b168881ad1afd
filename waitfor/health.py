"""`waitfor check` and `waitfor health`: one attempt per check, all in parallel, each
bounded by the attempt timeout, no retries. Exit 0 when all are ready, 1 otherwise
(never 2: Docker's HEALTHCHECK reserves it). The output stays far below the 4096 bytes
that Docker keeps of a health check's output."""

from waitfor import exitcodes

MAX_OUTPUT = 3000  # bytes; Docker keeps 4096 (daemon/health.go maxOutputLen)


def supervisor_view(cfg):
    """The (ok, lines) a watching supervisor in this container reports, or None.

    A supervisor that is still waiting is unhealthy, whatever the checks say. A running one
    is trusted only while its watch keeps the state fresh; otherwise health probes itself.
    """
    from waitfor import status as st

    if not cfg.watch_interval:
        return None
    max_age = 2 * cfg.watch_interval + cfg.attempt_timeout + 1
    state = st.read_live_state(st.state_path(), max_age=float("inf"))
    if state is None:
        return None
    if state["phase"] == st.WAITING:
        failing = ", ".join(state["failing"]) or "dependencies"
        return False, [f"FAIL waiting for {failing} (supervisor pid {state['pid']})"]
    if state["phase"] != st.RUNNING or st.read_live_state(st.state_path(), max_age) is None:
        return None
    lines = [f"{'ok' if c['ok'] else 'FAIL'} {c['name']}: {c['reason']}" for c in state["checks"]]
    return state["ready"], lines or ["ok"]


def run_health(cfg, log, checks, use_supervisor=False) -> int:
    view = supervisor_view(cfg) if use_supervisor else None
    if view is not None:
        ok, lines = view
        _print(cfg, ok, lines)
        return exitcodes.OK if ok else exitcodes.NOT_READY
    if not checks:
        return exitcodes.OK
    from waitfor import waiting

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
    if len(text.encode()) > MAX_OUTPUT:
        text = text.encode()[:MAX_OUTPUT].decode(errors="ignore") + "\n..."
    if cfg.verbosity >= 0 or cfg.log_format == "json":
        print(text)


class _Silent:
    """Health output is the summary above, not the wait's progress lines."""

    def _ignore(self, *a, **k):
        pass

    debug = info = warning = error = _ignore
