"""`waitfor run` (the default) and `waitfor wait`: the wait, then the hand-over.

    probes -> wait -> exec the app | re-exec into the lean supervisor | supervise in-process

This module owns that sequence: no lower layer calls back up into it.
"""

from __future__ import annotations

from waitfor import exitcodes
from waitfor.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from waitfor.config.model import Config
    from waitfor.output import Log
    from waitfor.signals import Inherited


def run_wait(cfg: Config, log: Log) -> int:
    """`waitfor wait`: 0 once every dependency is ready."""
    if not cfg.dependencies:
        log.info("nothing to wait for: no dependencies (give targets, -c FILE or WAITFOR_TARGETS)")
        return exitcodes.OK
    from waitfor.wait.engine import build_probes
    from waitfor.wait.loop import wait

    return wait(cfg, log, build_probes(cfg.dependencies))


def _hand_over(cfg: Config, rendered: list[tuple[str, str, int, bytes]] | None, log: Log) -> None:
    """What happens between the wait and the app: templates written, HOME for --user."""
    from waitfor.supervise import launch

    if rendered:
        from waitfor import templates

        templates.write(rendered, (cfg.user[1], cfg.user[2]) if cfg.user else None, log)
    launch.set_home(cfg)


def load_secrets(cfg: Config) -> dict[str, str]:
    """secrets_env: read every NAME_FILE now (a bad one is exit 2 before the wait), mask
    the values in every log line, and give them to the app (and to command probes) as NAME."""
    import os

    from waitfor.config import secrets_env
    from waitfor.output import mask

    values, removed = secrets_env.read(os.environ, cfg.secrets_env, cfg.secrets_dirs)
    mask(values.values())
    secrets_env.apply(values, removed)
    return values


def run(cfg: Config, inherited: Inherited, log: Log) -> int:
    """`waitfor run`: wait, then hand over to COMMAND; returns only on failure or, when
    supervising in-process, with the app's exit code."""
    from waitfor.supervise import launch

    # Every signal is blocked since cli.main(): those that arrive during the wait (other
    # than the ones that stop it) stay pending and are forwarded once the app runs.
    supervise = launch.supervises(cfg)
    cfg = launch.check_user(cfg)  # exit 2 before any waiting
    if cfg.user is not None:
        launch.run_children_as_user(cfg)  # command checks of the wait included
    if cfg.secrets_env:
        # `true` resolved to the NAMEs it read: the lean supervisor masks their values too
        cfg = cfg._replace(secrets_env=tuple(sorted(load_secrets(cfg))))
    rendered = None
    if cfg.templates:  # rendered now (exit 2 before the wait), written after it
        import os

        from waitfor import templates

        rendered = templates.render(cfg, os.environ, log)
    if supervise and (cfg.watch_interval or cfg.probe_addr):
        from waitfor.supervise.inprocess import Watched
        from waitfor.wait.build import build_watched
        from waitfor.wait.loop import wait

        probes, watch_probes = build_watched(cfg)
        with Watched(cfg, log, watch_probes) as watched:
            code = wait(cfg, log, probes, observe=watched.observe)
            if code != exitcodes.OK:
                return code
            _hand_over(cfg, rendered, log)
            return watched.supervise(inherited)
    if cfg.dependencies:  # the engine is imported only when there is something to wait for
        from waitfor.wait.engine import build_probes
        from waitfor.wait.loop import wait

        code = wait(cfg, log, build_probes(cfg.dependencies))
        if code != exitcodes.OK:
            return code
    _hand_over(cfg, rendered, log)
    if supervise:
        launch.reexec(cfg, inherited)
    from waitfor.process import ids

    launch.exec_app(cfg.command, inherited, ids(cfg.user), cfg.pdeathsig)
    raise UsageError("unreachable")  # exec_app either replaces this process or raises
