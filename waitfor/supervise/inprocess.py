"""`run` with a runtime watch or a probe endpoint: waitfor stays in this interpreter (it
keeps probing, so the lean re-exec of waitfor.supervise.launch would not help) and runs
the same supervisor loop (waitfor.supervise.init) in-process, with the watch as its hooks:

    with Watched(cfg, log) as w:     state file + probe endpoint
        wait(observe=w.observe)      (waitfor.commands.run)
        w.supervise(inherited)       supervise(app, hooks=watch)  ->  exit code

`waitfor sidecar` (waitfor.commands.sidecar) is the same sequence without an app:
w.gate() runs the watch, which then only updates the status, and waits for a stop signal.

Signals: every catchable signal is already blocked (cli.main), the probe-endpoint and
watch threads inherit that, so signals still reach only the main thread's sigwaitinfo().
"""

from __future__ import annotations

import signal
import threading

from waitfor.config.model import READY
from waitfor.supervise import state as st
from waitfor.supervise.init import Hooks, Options, reap, supervise
from waitfor.supervise.watch import Watch, watched

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from waitfor.config.model import Config
    from waitfor.output import Log
    from waitfor.probes.base import Probe
    from waitfor.signals import Inherited
    from waitfor.supervise.probe_server import ProbeServer
    from waitfor.wait.engine import Outcome


class WatchHooks(Hooks):
    """Bridges the watch thread and the supervisor loop in the main thread."""

    def __init__(self, cfg: Config, status: st.Status, log: Log, stop_app: bool = True,
                 probes: Mapping[str, Probe] | None = None) -> None:
        self.main_thread = threading.get_ident()
        self.log = log
        self._lost = threading.Event()
        self.watch = Watch(cfg, status, log, on_failure=self._on_failure if stop_app else None, probes=probes)
        # The watch's command probes run in this process: waitpid(-1) in the loop may reap
        # them first, and must hand their status back.
        self._reaped = None
        if any(d.kind == "command" for d in watched(cfg)):
            from waitfor.probes import command

            self._reaped = command.deliver

    def _on_failure(self, outcome: Outcome) -> None:
        self._lost.set()
        signal.pthread_kill(self.main_thread, signal.SIGCHLD)  # wake the supervisor loop

    def started(self, pid: int) -> None:
        from waitfor.probes.limits import local_limit

        try:
            self.watch.start()
        except RuntimeError as e:
            limit = local_limit(e)
            if limit is None:
                raise
            # The app runs already: leaving now would orphan it. Unwatched, as when a round
            # cannot run (waitfor.supervise.watch): the state file goes stale, and `health`
            # then probes by itself (issue 16 D15).
            self.log.warning(f"watch: not started: {limit}; the app runs unwatched")

    def lost(self) -> bool:
        return self._lost.is_set()

    def reaped(self, pid: int, status: int) -> None:
        if self._reaped is not None:
            self._reaped(pid, status)

    def stop(self) -> None:
        self.watch.stop()


class Watched:
    """The state file and the probe endpoint, from the start of the wait to the exit."""

    def __init__(self, cfg: Config, log: Log, probes: Mapping[str, Probe] | None = None) -> None:
        self.cfg, self.log, self.probes = cfg, log, probes
        self.status = st.Status.for_config(cfg, st.state_path())
        self.server: ProbeServer | None = None
        self.hooks: WatchHooks | None = None

    def __enter__(self) -> Watched:
        if self.cfg.probe_addr:
            from waitfor.supervise.probe_server import serve

            self.server = serve(self.cfg.probe_addr, self.status, self.log)
        self.status.save()
        if not self.status.start_heartbeat():
            from waitfor.probes.limits import THREAD_LIMIT

            self.log.warning(f"state file: no heartbeat: {THREAD_LIMIT}; carrying on without it "
                             "(the file is written on each change; `health` probes by itself once it is stale)")
        return self

    def observe(self, o: Outcome) -> None:
        """Each change of a dependency during the wait, for the state file and /readyz."""
        self.status.record(o.dep.name, o.state == READY, o.reason)
        self.status.save()  # `health` shows what the wait still waits for

    def supervise(self, inherited: Inherited) -> int:
        from waitfor import process
        from waitfor.supervise import launch

        if not launch.is_pid1():
            process.become_subreaper()
        self.hooks = WatchHooks(self.cfg, self.status, self.log, probes=self.probes)
        self.status.set_phase(st.RUNNING)
        # The forked child only makes system calls before exec, so the other threads are
        # harmless; Python 3.12+ warns about fork() with threads regardless.
        import warnings

        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        return supervise(Options.from_config(self.cfg, inherited), self.hooks)

    def gate(self) -> int:
        """`waitfor sidecar`, once every dependency was ready: no app; the watch keeps the
        state file and /readyz current (a lost dependency makes them fail, and pass again
        once it is back) until SIGTERM or SIGINT, which end it with 0 (the sidecar's work
        is done when the pod or the compose project stops); SIGHUP and SIGQUIT with 128+N,
        as during the wait. Every signal is blocked since cli.main(). Children are reaped
        here (as PID 1, the orphans of command checks come to waitfor), their statuses
        handed to the command checks as the supervisor loop does."""
        from waitfor import exitcodes
        from waitfor.signals import STOP_SIGNALS, catchable, signal_name

        self.hooks = WatchHooks(self.cfg, self.status, self.log, stop_app=False, probes=self.probes)
        self.status.set_phase(st.RUNNING)
        self.hooks.watch.start()
        self.log.info("all dependencies ready; serving as a sidecar until SIGTERM")
        waited = catchable()
        while True:
            sig = signal.sigwaitinfo(waited).si_signo
            if sig == signal.SIGCHLD:
                reap(None, self.hooks)
                continue
            if sig in STOP_SIGNALS:
                name = signal_name(sig)
                self.log.info(f"received {name}; stopping", signal=name)
                return exitcodes.OK if sig in (signal.SIGTERM, signal.SIGINT) else exitcodes.from_signal(sig)
            self.log.debug(f"received {signal_name(sig)}; ignored (no app to pass it to)")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.hooks is not None:
            self.hooks.stop()
        self.status.set_phase(st.STOPPING)
        self.status.remove()
        if self.server is not None:
            self.server.shutdown()  # else serve_forever() polls the closed socket until exit
            self.server.server_close()
