"""The supervisor's current view of the world, shared by the wait, the runtime watch, the
probe endpoint (/livez, /readyz, /startupz) and `waitfor health` in the same container.

Written to a small JSON state file (WAITFOR_STATE_FILE, default /tmp/waitfor-state.json)
after every change, so that a HEALTHCHECK's `waitfor health`, which runs as a separate
process, can report what the supervisor sees instead of probing again. Nothing secret is
stored: only names and already-redacted reasons.
"""

import json
import os
import threading
import time

WAITING, RUNNING, STOPPING = "waiting", "running", "stopping"


DEFAULT_STATE_FILE = "/tmp/waitfor-state.json"


def state_path(env=os.environ) -> str:
    """A fixed default, not tempfile.gettempdir(): that one raises when no temporary
    directory is writable (a read-only root filesystem), and it follows TMPDIR, which the
    HEALTHCHECK's process need not share with PID 1. Writing is best-effort (Status._save)."""
    return env.get("WAITFOR_STATE_FILE") or DEFAULT_STATE_FILE


class Status:
    def __init__(self, path: "str | None" = None, watch_interval: "float | None" = None):
        self.path = path
        self.watch_interval = watch_interval  # for `waitfor health`: how fresh the view must be
        self._lock = threading.Lock()
        self.phase = WAITING
        self.checks = {}  # name -> {"ok": bool, "reason": str, "failures": int}
        self.updated = time.time()

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self.phase = phase
        self._save()

    def record(self, name: str, ok: bool, reason: str) -> int:
        """Record one check's result; return its failures in a row."""
        with self._lock:
            prev = self.checks.get(name, {"failures": 0})
            failures = 0 if ok else prev["failures"] + 1
            self.checks[name] = {"ok": ok, "reason": reason[:200], "failures": failures}
        return failures

    def snapshot(self) -> dict:
        with self._lock:
            checks = [{"name": n, **c} for n, c in self.checks.items()]
            failing = [c["name"] for c in checks if not c["ok"]]
            return {
                "pid": os.getpid(),
                "phase": self.phase,
                "live": self.phase in (WAITING, RUNNING),
                "started": self.phase in (RUNNING, STOPPING),
                "ready": self.phase == RUNNING and not failing,
                "failing": failing,
                "checks": checks,
                "updated": self.updated,
                "watch_interval": self.watch_interval,
            }

    def save(self) -> None:
        self._save()

    def _save(self) -> None:
        if not self.path:
            return
        self.updated = time.time()
        data = json.dumps(self.snapshot())
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            # /tmp is shared: never follow a planted link, never reuse someone else's file
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.replace(tmp, self.path)  # atomic: a reader never sees half a file
        except OSError:
            pass  # a read-only /tmp must not break the app; health then probes itself

    def remove(self) -> None:
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def read_live_state(path: str, max_age: float) -> "dict | None":
    """The state written by a supervisor that is still alive and recently updated, or None."""
    try:
        with open(path) as f:
            if os.fstat(f.fileno()).st_uid not in (os.getuid(), 0):
                return None  # planted by another user: not the supervisor's view
            state = json.load(f)
        pid = int(state["pid"])
        updated = float(state.get("updated", 0))
        if not isinstance(state.get("checks", []), list) or state.get("phase") not in (WAITING, RUNNING, STOPPING):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass  # alive, but another user's
    except OSError:
        return None
    if time.time() - updated > max_age:
        return None
    return state
