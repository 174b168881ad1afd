"""The probes stage of the data flow (Config -> probes -> outcomes): each dependency's
probe, built once before the wait, so that a URL or option its driver rejects is exit 2
then, not a failed attempt every interval.

A driver kind that the scheduler pre-checks (its kind's `connect_target`) gets a probe
that imports its driver only when it first runs, that is when its port first answers
(waitfor.wait.engine runs a driver's probe only once the scheduler's own connect was
accepted). Its URL and options are still checked now, by the driver itself, in a forked
child that exits with the same one-line error (exit 2): a waiter whose database is down
does not carry the driver meanwhile (psycopg and libpq: ~15 MiB of RSS, BENCHMARKS.md).
Where fork is not available or fails, or the driver is loaded already, it is built here.
"""

from __future__ import annotations

import os
import sys
import threading

from waitfor.probes.base import NotReady, Refused, describe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from waitfor.config.model import Dependency
    from waitfor.probes.base import Probe

# What the child may say about one dependency (one line, as every error of waitfor).
_MAX_ERROR = 4096


def make_probe(dep: Dependency) -> Probe:
    """Build a dependency's probe (its driver imported now), inverted if asked; a driver's
    rejection of the URL or an option is a UsageError located at the dependency."""
    from waitfor.probes import table

    probe = table.build_probe(dep)
    return _inverted(probe, dep.kind) if dep.invert else probe


def build_probes(deps: Iterable[Dependency]) -> dict[str, Probe]:
    """Every dependency's probe: built now, or checked now and built when its port first
    answers (see the module's docstring)."""
    deps = list(deps)
    later = [d for d in deps if _deferrable(d)]
    if later and not _checked_in_child(later):
        later = []
    deferred = {d.name for d in later}
    return {dep.name: _deferred(dep) if dep.name in deferred else make_probe(dep) for dep in deps}


def _deferrable(dep: Dependency) -> bool:
    from waitfor.probes import table
    from waitfor.urls import urlsplit

    if dep.invert or not hasattr(os, "fork"):
        return False
    kind = table.load(dep.kind)
    if kind.DRIVER is None or kind.DRIVER.split(".")[0] in sys.modules:
        return False  # nothing to save: no driver, or it is loaded already
    try:
        return kind.connect_target(urlsplit(dep.url)) is not None
    except ValueError:
        return False


def _checked_in_child(deps: list[Dependency]) -> bool:
    """Build the probes of `deps` in a forked child, which imports their drivers and exits.
    True: every one is fine. Raises the child's UsageError (exit 2, nothing started).
    False: the check could not run (no fork, the child died): build them here instead."""
    from waitfor.errors import UsageError, WaitforError

    try:
        r, w = os.pipe()
    except OSError:
        return False
    try:
        pid = os.fork()
    except OSError:  # EAGAIN (a pids limit), ENOMEM: a local limit; today's way then
        os.close(r)
        os.close(w)
        return False
    if pid == 0:  # the child: no thread runs yet (the wait has not started), exit without cleanup
        code = 0
        try:
            os.close(r)
            for dep in deps:
                make_probe(dep)
        except WaitforError as e:
            code = e.exit_code
            os.write(w, str(e).encode(errors="replace")[:_MAX_ERROR])
        except BaseException:  # noqa: BLE001 - anything else: the parent builds them itself
            code = 70
        os._exit(code)
    os.close(w)
    chunks = []
    try:
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return True
    if code == UsageError.exit_code and chunks:
        raise UsageError(b"".join(chunks).decode(errors="replace"))
    return False


def _deferred(dep: Dependency) -> Probe:
    """A probe that builds the real one (importing the driver) on its first call."""
    built: list[Probe] = []
    lock = threading.Lock()

    def probe(timeout: float) -> str | None:
        if not built:
            with lock:
                if not built:
                    built.append(make_probe(dep))
        return built[0](timeout)

    return probe


def _inverted(probe: Probe, kind: str) -> Probe:
    still = "still exists" if kind == "file" else "still reachable"

    def inverted(timeout: float) -> str:
        try:
            probe(timeout)
        except NotReady as e:
            return f"gone ({describe(e)})"
        # Still there; asking again is as cheap as the probe itself, so retry fast.
        raise Refused(f"{still} (invert: true)")

    return inverted
