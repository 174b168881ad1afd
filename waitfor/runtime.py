"""`run` with a runtime watch or a probe endpoint: waitfor stays in this interpreter (it
keeps probing, so the lean re-exec of waitfor.handover would not help) and runs the same
supervisor loop in-process, with the watch as its hook:

    status file + probe endpoint  ->  wait  ->  supervise(app, hooks=watch)  ->  exit code

Signals: every catchable signal is already blocked (cli.run), the probe-endpoint and watch
threads inherit that, so signals still reach only the main thread's sigwaitinfo().
"""

import signal
import threading
import warnings

from waitfor import handover, status as st, supervisor
from waitfor.watch import Watch, watched


class WatchHooks:
    """Bridges the watch thread and the supervisor loop in the main thread."""

    def __init__(self, cfg, status, log):
        self.main_thread = threading.get_ident()
        self._lost = threading.Event()
        self.watch = Watch(cfg, status, log, on_failure=self._on_failure)

    def _on_failure(self, outcome) -> None:
        self._lost.set()
        signal.pthread_kill(self.main_thread, signal.SIGCHLD)  # wake the supervisor loop

    def started(self, pid: int) -> None:
        self.watch.start()

    def lost(self) -> bool:
        return self._lost.is_set()

    def stop(self) -> None:
        self.watch.stop()


def run_watched(cfg, inherited, log, wait_phase) -> int:
    status = st.Status(st.state_path(), watch_interval=cfg.watch_interval)
    server = None
    if cfg.probe_addr:
        from waitfor.probe_server import serve

        server = serve(cfg.probe_addr, status, log)
    hooks = None
    try:
        status.save()
        code = wait_phase(cfg, log, observe=lambda o: status.record(o.dep.name, o.state == "ready", o.reason))
        if code != 0:
            return code
        if not handover.is_pid1():
            handover.become_subreaper()
        if any(d.kind == "command" for d in watched(cfg)):
            from waitfor.probes import command

            supervisor.on_reaped_other.append(command.deliver)
        hooks = WatchHooks(cfg, status, log)
        status.set_phase(st.RUNNING)
        # The forked child only makes system calls before exec, so the other threads are
        # harmless; Python 3.12+ warns about fork() with threads regardless.
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        opts = supervisor.parse(handover.supervisor_args(cfg, inherited))
        return supervisor.supervise(opts, hooks)
    finally:
        if hooks is not None:
            hooks.stop()
        status.set_phase(st.STOPPING)
        status.remove()
        if server is not None:
            server.shutdown()  # else serve_forever() polls the closed socket until exit
            server.server_close()
