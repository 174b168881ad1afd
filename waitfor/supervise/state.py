"""The supervisor's current view of the world, shared by the wait, the runtime watch, the
probe endpoint (/livez, /readyz, /startupz) and `waitfor health` in the same container.

Written to a small JSON state file (WAITFOR_STATE_FILE, default /tmp/waitfor-state.json)
after every change, so that a HEALTHCHECK's `waitfor health`, which runs as a separate
process, can report what the supervisor sees instead of probing again. Nothing secret is
stored: only public names (see `public_name`), reasons masked before they are cut, and a
keyed hash of the checks (`identity`) so that the file answers only a health check of the
same checks; every string of the file passes waitfor.output's mask as it is written.

The reader (`read_live_state`) treats the file as hostile (issue 10 A3): /tmp is shared,
and whatever sits at the path may be a FIFO, a link to /dev/zero, a huge file or a JSON
document with NaN or 1e400 in it. Any doubt means "no supervisor view": `health` then
probes by itself, which is always a correct answer, only a slower one.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time

from waitfor.config.model import WAITING
from waitfor.output import cut, masked_data

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from waitfor.config.model import Config, Dependency

# The supervisor's phases. WAITING is the dependency state of the same name (config.model):
# while the supervisor waits, the app waits too.
RUNNING, STOPPING = "running", "stopping"
PHASES = (WAITING, RUNNING, STOPPING)

DEFAULT_STATE_FILE = "/tmp/waitfor-state.json"
MAX_STATE_BYTES = 64 * 1024  # a real state file is < 1 KiB per check; more is not ours
MAX_CHECKS = 1000
MAX_PID = 1 << 22  # PID_MAX_LIMIT on 64-bit Linux (include/linux/threads.h)
# While it waits, the supervisor rewrites the file every HEARTBEAT seconds; a "waiting"
# file older than WAITING_FRESH is a dead supervisor's (or a reused pid's), not a view.
HEARTBEAT = 2.0
WAITING_FRESH = 3 * HEARTBEAT + 1


def state_path(env: Mapping[str, str] = os.environ) -> str:
    """A fixed default, not tempfile.gettempdir(): that one raises when no temporary
    directory is writable (a read-only root filesystem), and it follows TMPDIR, which the
    HEALTHCHECK's process need not share with PID 1. Writing is best-effort (Status._save)."""
    return env.get("WAITFOR_STATE_FILE") or DEFAULT_STATE_FILE


# --------------------------------------------------------------------------- identity


def _normal(obj: object) -> object:
    """json.dumps' fallback for option values: mappings, sets (in a stable order), others by repr."""
    if isinstance(obj, (set, frozenset)):
        return sorted(repr(x) for x in obj)
    if hasattr(obj, "items"):
        return dict(obj.items())
    return repr(obj)


def _dep_key(d: Dependency) -> dict[str, object]:
    return {"name": d.name, "kind": d.kind, "url": d.url, "argv": list(d.argv), "options": dict(d.options),
            "timeout": d.timeout, "after": sorted(d.after), "invert": d.invert}


def identity(cfg: Config, salt: str) -> str:
    """What the supervisor checks, as a keyed hash: its dependencies and health checks with
    every option (URLs included, so a changed host, port or password is another identity).

    Keyed with a random per-supervisor salt (stored next to it), so the hash is no
    fingerprint of a password that could be looked up across containers; the file itself
    is 0600. BLAKE2b is in hashlib, so this costs no import beyond the standard library."""
    import hashlib

    doc = {"dependencies": [_dep_key(d) for d in cfg.dependencies],
           "health": None if cfg.health is None else [_dep_key(d) for d in cfg.health]}
    text = json.dumps(doc, sort_keys=True, default=_normal, ensure_ascii=True)
    return hashlib.blake2b(text.encode(), key=bytes.fromhex(salt)[:64], digest_size=32).hexdigest()


def new_salt() -> str:
    return os.urandom(16).hex()


def public_name(dep: Dependency, index: int) -> str:
    """The name /readyz and the state file show (issue 10 D12): the user's own `name:`, or a
    name that reveals nothing: kind and host:port for a URL (no user, password, path or
    query), `command#N` for a command, whose arguments may hold anything (`-pLEAK`)."""
    if dep.named:
        return dep.name
    if dep.kind == "command" or not dep.url:
        return f"{dep.kind}#{index}"
    from waitfor.urls import urlsplit

    try:
        parts = urlsplit(dep.url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return f"{dep.kind}#{index}"
    if not host:
        return f"{dep.kind}#{index}"  # unix:///path, file:///path: paths are the user's business
    host = f"[{host}]" if ":" in host else host
    return f"{dep.kind} {host}:{port}" if port else f"{dep.kind} {host}"


def public_names(deps: Iterable[Dependency]) -> dict[str, str]:
    """name -> public name, unique (a repeat gets #2, #3 as config.targets.uniquify does)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for i, d in enumerate(deps, 1):
        if d.name in out:
            continue
        shown = public_name(d, i)
        base, n = shown, 2
        while shown in used:
            shown, n = f"{base} #{n}", n + 1
        used.add(shown)
        out[d.name] = shown
    return out


# --------------------------------------------------------------------------- writer


class Status:
    def __init__(self, path: str | None = None, watch_interval: float | None = None,
                 ident: str | None = None, salt: str | None = None,
                 names: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.watch_interval = watch_interval  # for `waitfor health`: how fresh the view must be
        self.identity, self.salt = ident, salt
        self.names = dict(names or {})  # a dependency's name -> the name the file and /readyz show
        self._lock = threading.Lock()
        self.phase = WAITING
        self.checks: dict[str, dict[str, Any]] = {}  # public name -> {"ok", "reason", "failures"}
        self.updated = time.time()
        self._heartbeat: threading.Thread | None = None
        self._stopped = threading.Event()
        self._save_lock = threading.Lock()  # a heartbeat never rewrites the file after remove()

    @classmethod
    def for_config(cls, cfg: Config, path: str | None) -> Status:
        salt = new_salt()
        return cls(path, watch_interval=cfg.watch_interval, ident=identity(cfg, salt), salt=salt,
                   names=public_names(tuple(cfg.dependencies) + tuple(cfg.health or ())))

    def shown(self, name: str) -> str:
        return self.names.get(name, name)

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self.phase = phase
        self._save()

    def record(self, name: str, ok: bool, reason: str) -> int:
        """Record one check's result; return its failures in a row."""
        shown = self.shown(name)
        with self._lock:
            prev = self.checks.get(shown, {"failures": 0})
            failures = 0 if ok else prev["failures"] + 1
            self.checks[shown] = {"ok": ok, "reason": cut(reason, 200), "failures": failures}
        return failures

    def snapshot(self) -> dict[str, Any]:
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
                "identity": self.identity,
                "salt": self.salt,
            }

    def save(self) -> None:
        self._save()

    def start_heartbeat(self) -> None:
        """Keep a waiting supervisor's file fresh: the freshness rule holds in every phase,
        so a reader can tell a long wait from a dead supervisor whose pid was reused."""
        if self.path and self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._beat, name="state-heartbeat", daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stopped.wait(HEARTBEAT):
            if self.phase != WAITING:
                return  # a running view is kept fresh by the watch alone: no idle wake-ups
            self._save(beat=True)

    def _save(self, beat: bool = False) -> None:
        with self._save_lock:
            if self.path and not (beat and self._stopped.is_set()):
                self._write(self.path)

    def _write(self, path: str) -> None:
        self.updated = time.time()
        data = json.dumps(masked_data(self.snapshot()))  # the mask at the door (issue 16 B4)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            # /tmp is shared: never follow a planted link, never reuse someone else's file
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            return  # a read-only /tmp must not break the app; health then probes itself
        try:
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: a reader never sees half a file
        except OSError:  # a full disk (ENOSPC at write or close): leave no temporary file
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def remove(self) -> None:
        self._stopped.set()
        with self._save_lock:
            if self.path:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass


# --------------------------------------------------------------------------- reader


def _read_bounded(path: str) -> bytes | None:
    """The file's bytes if it is a small regular file of ours (or root's), else None.

    O_NOFOLLOW: a planted link (to /dev/zero, to another user's file) is not followed.
    O_NONBLOCK: opening a FIFO does not wait for a writer (it is then refused by type).
    fstat before reading, on the opened file: no race between the check and the read."""
    import stat

    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (os.getuid(), 0):
            return None
        if st.st_mode & 0o022 or st.st_size > MAX_STATE_BYTES:
            return None  # writable by others: anyone could have written it
        data = os.read(fd, MAX_STATE_BYTES + 1)
        return data if len(data) <= MAX_STATE_BYTES else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _reject_constant(name: str) -> object:
    raise ValueError(f"not a JSON number: {name}")


def _number(v: object) -> bool:
    """A finite JSON number of sane size (10**400 is an int, and no float: OverflowError)."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return -(1 << 53) <= v <= 1 << 53
    return isinstance(v, float) and math.isfinite(v)


def _str(v: object, limit: int = 1000) -> bool:
    return isinstance(v, str) and len(v) <= limit


def _hex(v: object) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 128 and len(v) % 2 == 0 and all(c in "0123456789abcdef" for c in v)


def validate(state: object, now: float) -> dict[str, Any] | None:
    """The state if every field has the type and range this version writes, else None."""
    if not isinstance(state, dict):
        return None
    pid, updated, phase = state.get("pid"), state.get("updated"), state.get("phase")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 1 <= pid <= MAX_PID:
        return None
    if not _number(updated) or not 0 < updated <= now + 5:  # type: ignore[operator]
        return None  # NaN would be fresh forever; a future time, fresh for long
    if phase not in PHASES:
        return None
    interval = state.get("watch_interval")
    if interval is not None and not (_number(interval) and 0 < interval <= 10**6):
        return None
    for key in ("live", "started", "ready"):
        if not isinstance(state.get(key), bool):
            return None
    if not (_hex(state.get("identity")) and _hex(state.get("salt"))):
        return None
    checks, failing = state.get("checks"), state.get("failing")
    if not isinstance(checks, list) or len(checks) > MAX_CHECKS:
        return None
    if not isinstance(failing, list) or len(failing) > MAX_CHECKS or not all(_str(f) for f in failing):
        return None
    for c in checks:
        if not (isinstance(c, dict) and _str(c.get("name")) and isinstance(c.get("ok"), bool)
                and _str(c.get("reason")) and isinstance(c.get("failures"), int)
                and not isinstance(c.get("failures"), bool)):
            return None
    return state


def read_live_state(path: str, max_age: float) -> dict[str, Any] | None:
    """The state written by a supervisor that is still alive and recently updated, or None.

    `max_age` applies to a running or stopping supervisor's file; a waiting one's must be
    younger than WAITING_FRESH (it is rewritten every HEARTBEAT seconds)."""
    data = _read_bounded(path)
    if data is None:
        return None
    try:
        state = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    now = time.time()
    valid = validate(state, now)
    if valid is None:
        return None
    age = now - valid["updated"]
    if age > (WAITING_FRESH if valid["phase"] == WAITING else max_age):
        return None
    try:
        os.kill(valid["pid"], 0)
    except PermissionError:
        pass  # alive, but another user's
    except OSError:
        return None
    return valid
