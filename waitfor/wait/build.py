"""The probes stage of the data flow (Config -> probes -> outcomes): each dependency's
probe, built once before the wait, so that a URL or option its driver rejects is exit 2
then, not a failed attempt every interval.

Drivers are imported here, before the wait, also for a driver kind whose port is still
closed. Importing them only when the port first answers was built and measured
(BENCHMARKS.md "Fleet": a postgres waiter 34.7 -> 17 MiB RSS while it waits) and then
left out: the driver's check of the URL then needs a forked child (~0.1 s of CPU per
waiter), and a whole fleet imports psycopg at the very moment the database opens, which
on this 2-core machine put the last app's start 2.65 s after the opening at N = 50 (1.0 s
with the import before the wait; the target is 1.2 s).
"""

from __future__ import annotations

from waitfor.probes.base import NotReady, Refused, describe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from waitfor.config.model import Config, Dependency
    from waitfor.probes.base import Probe


def make_probe(dep: Dependency) -> Probe:
    """Build a dependency's probe (its driver imported now), inverted if asked; a driver's
    rejection of the URL or an option is a UsageError located at the dependency."""
    from waitfor.probes import table

    probe = table.build_probe(dep)
    return _inverted(probe, table.load(dep.kind).STILL_THERE) if dep.invert else probe


def build_probes(deps: Iterable[Dependency]) -> dict[str, Probe]:
    """Every dependency's probe, built now."""
    return {dep.name: make_probe(dep) for dep in deps}


def build_watched(cfg: Config) -> tuple[dict[str, Probe], dict[str, Probe]]:
    """The wait's probes (the dependencies) and the runtime watch's (those and the `health:`
    checks), each built once, now: a driver's rejection of either is exit 2 before the
    wait, and every round of the watch reuses them (`run` with a watch, `sidecar`)."""
    probes = build_probes(cfg.dependencies)
    return probes, {**build_probes(d for d in cfg.checks if d.name not in probes), **probes}


def _inverted(probe: Probe, still: str) -> Probe:
    """Ready once the probe fails; while it passes, `Refused` with the kind's STILL_THERE."""

    def inverted(timeout: float) -> str:
        try:
            probe(timeout)
        except NotReady as e:
            return f"gone ({describe(e)})"
        # Still there; asking again is as cheap as the probe itself, so retry fast.
        raise Refused(f"{still} (invert: true)")

    return inverted
