"""`waitfor check` and `waitfor health`: one attempt per check, all in parallel, each
bounded by the attempt timeout, no retries. Exit 0 when all are ready, 1 otherwise
(never 2: Docker's HEALTHCHECK reserves it). The output stays far below the 4096 bytes
that Docker keeps of a health check's output."""

from waitfor import exitcodes

MAX_OUTPUT = 3000  # bytes; Docker keeps 4096 (daemon/health.go maxOutputLen)


def run_health(cfg, log, checks) -> int:
    if not checks:
        return exitcodes.OK
    from waitfor import waiting

    try:
        results = waiting.wait_for(cfg, checks, _Silent(), single_attempt=True, fail_fast=False)
    except waiting.Stopped as s:
        return exitcodes.from_signal(s.signum)
    ok = all(o.state == "ready" for o in results)
    lines = [
        f"{'ok' if o.state == 'ready' else 'FAIL'} {o.dep.name}: {o.reason}" for o in results
    ]
    text = "\n".join(lines)
    if len(text.encode()) > MAX_OUTPUT:
        text = text.encode()[:MAX_OUTPUT].decode(errors="ignore") + "\n..."
    if cfg.log_format == "json":
        import json

        print(json.dumps({"healthy": ok, "checks": [
            {"name": o.dep.name, "ready": o.state == "ready", "reason": o.reason[:200]} for o in results
        ]}))
    elif cfg.verbosity >= 0:
        print(text)
    return exitcodes.OK if ok else exitcodes.NOT_READY


class _Silent:
    """Health output is the summary above, not the wait's progress lines."""

    def _ignore(self, *a, **k):
        pass

    debug = info = warning = error = _ignore
