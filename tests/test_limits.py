"""An attempt is bounded, whatever the other side does: one deadline per attempt (a server
that drips its answer), a regex that backtracks, command probes and their children and
output, running out of file descriptors; config files must be small regular files.

Real hostile servers on 127.0.0.1 (tests/helpers/servers.py `Drip`: an answer one byte per
interval, which keeps every per-read socket timeout happy), real processes. The bounds
asserted are generous ("a few seconds instead of 30"); the figures are in bench/.
"""

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import time

import pytest

from helpers.core import PY, REPO, clean_env, spawn, waitfor
from helpers.servers import Drip


def run(*args, limit=60):
    """(CompletedProcess, seconds) of `waitfor ARGS`."""
    proc = waitfor(*args, timeout=limit, cwd=REPO)
    return proc, proc.took


@pytest.fixture
def drip():
    servers = []

    def make(**kw):
        servers.append(Drip(**kw))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


# ------------------------------------------------------------------ one deadline per attempt


def test_http_status_line_dripped_is_cut_at_the_attempt_timeout(drip):
    d = drip(payload=b"HTTP/1.0 200 OK\r\n\r\n", every=0.5)  # 19 bytes: 9.5 s per attempt before
    proc, took = run("check", "--attempt-timeout", "1s", "-t", "30s", f"http://127.0.0.1:{d.port}/")
    assert proc.returncode == 1, proc
    assert "within 1s" in proc.stdout + proc.stderr
    assert took < 5, took


def test_http_body_dripped_is_cut_at_the_attempt_timeout(drip, tmp_path):
    body = b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n"
    d = drip(payload=body + b"x" * 99 + b"y", every=0.05)  # 7 s per attempt before
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"dependencies:\n  - url: http://127.0.0.1:{d.port}/\n    body: 'xy'\n")
    proc, took = run("check", "-c", cfg, "--attempt-timeout", "1s", "-t", "30s")
    assert proc.returncode == 1, proc
    assert took < 5, took


def test_health_with_no_deadline_still_ends_with_the_attempt(drip):
    d = drip(payload=b"HTTP/1.0 200 OK\r\n\r\n", every=0.5)
    proc, took = run("health", "-t", "0", "--attempt-timeout", "1s", f"http://127.0.0.1:{d.port}/")
    assert proc.returncode == 1, proc
    assert took < 5, took


def test_redis_replies_dripped_are_cut_at_the_attempt_timeout(drip):
    pytest.importorskip("redis")
    d = drip(payload=b"+OK\r\n" * 20 + b"+PONG\r\n", every=0.2)
    proc, took = run("check", "--attempt-timeout", "1s", "-t", "30s", f"redis://127.0.0.1:{d.port}/0")
    assert proc.returncode == 1, proc
    assert "within 1s" in proc.stdout + proc.stderr
    assert took < 5, took


def test_mysql_greeting_dripped_is_cut_at_the_attempt_timeout(drip):
    pytest.importorskip("pymysql")
    # A packet header announcing 200 bytes, then the bytes one by one: 60 s before.
    d = drip(payload=b"\xc8\x00\x00\x00" + b"\x0a" + b"5" * 199, every=0.2, client_first=False)
    proc, took = run("check", "--attempt-timeout", "1s", "-t", "30s", f"mysql://root@127.0.0.1:{d.port}/")
    assert proc.returncode == 1, proc
    assert "within 1s" in proc.stdout + proc.stderr
    assert took < 5, took


# ------------------------------------------------------------------ a regex that backtracks

CATASTROPHIC = {
    "re2": "(a*)*b",  # linear in RE2 (when installed); exponential in Python's re
    "child": "(?=(a*)*b)a",  # lookahead: RE2 cannot, so it is matched in a killed child
}


def body_config(tmp_path, port, pattern):
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"dependencies:\n  - url: http://127.0.0.1:{port}/\n    body: '{pattern}'\n")
    return cfg


@pytest.mark.parametrize("path", sorted(CATASTROPHIC))
def test_catastrophic_body_regex_is_bounded_by_the_attempt(drip, tmp_path, path):
    d = drip(payload=b"HTTP/1.0 200 OK\r\n\r\n" + b"a" * 40 + b"!", every=0)
    cfg = body_config(tmp_path, d.port, CATASTROPHIC[path])
    proc, took = run("check", "-c", cfg, "--attempt-timeout", "1s", "-t", "2s")
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    assert took < 5, took


def test_sigterm_is_prompt_during_a_catastrophic_body_regex(drip, tmp_path):
    import psutil

    d = drip(payload=b"HTTP/1.0 200 OK\r\n\r\n" + b"a" * 40 + b"!", every=0)
    cfg = body_config(tmp_path, d.port, CATASTROPHIC["child"])
    proc = spawn("wait", "-c", str(cfg), "-t", "30s", "--attempt-timeout", "20s", cwd=REPO, env=clean_env(),
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    kids = psutil.Process(proc.pid).children(recursive=True)
    assert kids, "the match runs in a child"
    t0 = time.monotonic()
    proc.send_signal(15)
    proc.communicate(timeout=20)
    took = time.monotonic() - t0
    assert took < 2, took
    time.sleep(0.2)
    assert not [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE], kids


# ------------------------------------------------------------------ command probes


def sleepers(tag: str):
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        if p.info["cmdline"] and p.info["cmdline"][-1:] == [tag] and "sleep" in p.info["cmdline"][0]:
            out.append(p)
    return out


def command_config(tmp_path, argv):
    import json

    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"dependencies:\n  - command: {json.dumps(argv)}\n")
    return cfg


def test_command_background_child_ends_with_the_attempt(tmp_path):
    tag = f"301.{os.getpid()}"
    cfg = command_config(tmp_path, ["sh", "-c", f"sleep {tag} & exit 1"])
    proc, _ = run("check", "-c", cfg, "--attempt-timeout", "2s", "-t", "3s")
    assert proc.returncode == 1, proc
    time.sleep(0.3)
    left = sleepers(tag)
    for p in left:
        p.kill()
    assert not left, "the probe's background child outlived its attempt"


def test_command_setsid_descendant_is_killed_at_the_attempt_timeout(tmp_path):
    tag = f"302.{os.getpid()}"
    cfg = command_config(tmp_path, ["sh", "-c", f"setsid sleep {tag} & sleep 100"])
    proc, took = run("check", "-c", cfg, "--attempt-timeout", "1s", "-t", "2s")
    assert proc.returncode == 1, proc
    assert took < 5, took
    time.sleep(0.3)
    left = sleepers(tag)
    for p in left:
        p.kill()
    assert not left, "a setsid descendant of the probe outlived its attempt"


def test_command_output_is_bounded_in_memory_and_on_disk(tmp_path):
    import psutil

    cfg = command_config(tmp_path, ["yes"])
    proc = spawn("check", "-c", str(cfg), "--attempt-timeout", "2s", "-t", "3s", cwd=REPO,
                 env=clean_env(TMPDIR=str(tmp_path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    me = psutil.Process(proc.pid)
    rss = files = 0
    while proc.poll() is None:
        try:
            rss = max(rss, me.memory_info().rss)
            for fd in os.listdir(f"/proc/{proc.pid}/fd"):  # deleted temp files too
                try:
                    target = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                    st = os.stat(f"/proc/{proc.pid}/fd/{fd}")
                except OSError:
                    continue
                # only what it writes: temp files (TMPDIR, or deleted), not a shared library
                # or module that start-up happens to hold open for a moment
                if not (target.startswith(str(tmp_path)) or target.endswith("(deleted)")):
                    continue
                if stat.S_ISREG(st.st_mode):
                    files = max(files, st.st_size)
        except (psutil.Error, FileNotFoundError):
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1, err
    assert files < 1 << 20, f"output file grew to {files} bytes"
    assert rss < 200 << 20, f"RSS grew to {rss} bytes"


# ------------------------------------------------------------------ out of file descriptors


def test_fd_exhaustion_is_a_local_limit_not_a_crash(tmp_path):
    pytest.importorskip("psycopg")
    cfg = tmp_path / "w.yaml"
    cfg.write_text("dependencies:\n" + "".join(
        f"  - {{name: pg{i}, url: 'postgres://root@127.0.0.1:5432/test'}}\n" for i in range(30)))
    proc = waitfor("wait", "-c", cfg, "-t", "3s", prefix=["bash", "-c", 'ulimit -n 16; exec "$@"', "bash"],
                   capture_output=True, text=True, timeout=60, cwd=REPO, env=clean_env())
    assert proc.returncode in (0, 124), proc  # not 134 (glibc abort) nor 70
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "libgcc_s" not in proc.stderr, proc.stderr
    assert "never awaited" not in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr  # e.g. the lazy import of tenacity
    assert "cannot become ready" not in proc.stderr, proc.stderr  # not the dependency's fault
    reasons = [ln for ln in proc.stderr.splitlines() if "Too many open files" in ln]
    assert reasons and all("local resource limit" in ln for ln in reasons), proc.stderr


# ------------------------------------------------------------------ hostile files and URLs are exit 2


@pytest.fixture
def hostile_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"a" * (100 << 10))  # a password of 100 KiB is no password
    huge = tmp_path / "huge"
    with open(huge, "wb") as f:
        f.truncate(5 << 20)  # sparse: a "CA bundle" of 5 MiB
    return {"fifo": fifo, "zero": "/dev/zero", "big": big, "huge": huge}


@pytest.mark.parametrize(("what", "key", "url"), [
    ("fifo", "password_file", "redis://127.0.0.1:6379/0"),
    ("zero", "password_file", "postgres://root@127.0.0.1:5432/test"),
    ("big", "password_file", "redis://127.0.0.1:6379/0"),
    ("fifo", "ca_file", "https://127.0.0.1:1/"),
    ("zero", "ca_file", "https://127.0.0.1:1/"),
    ("huge", "ca_file", "mqtts://127.0.0.1:1"),
])
def test_config_files_must_be_small_regular_files(tmp_path, hostile_files, what, key, url):
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"dependencies:\n  - url: {url}\n    {key}: {hostile_files[what]}\n")
    proc, took = run("wait", "-c", cfg, "-t", "30s", limit=20)  # a FIFO hung for ever before
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{key}" in lines[0] and "w.yaml:3" in lines[0], proc.stderr
    assert took < 5, took


@pytest.mark.parametrize("url", [
    "postgres://root@127.0.0.1:5432/test?sslmode=bogus",
    "postgres://root@127.0.0.1:5432/test?bogus=1",
    "redis://127.0.0.1:6379/0?protocol=9",
    "redis://127.0.0.1:6379/0?socket_timeout=abc",
    "rediss://127.0.0.1:6379/0?ssl_cert_reqs=bogus",
])
def test_driver_rejected_urls_are_exit_2_not_a_timeout(url):
    pytest.importorskip("psycopg" if url.startswith("postgres") else "redis")
    proc, took = run("wait", "-t", "30s", url)
    assert proc.returncode == 2, proc
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert took < 5, took


def test_fd_exhaustion_at_the_engines_start_is_a_local_limit(tmp_path):
    """Issue 16 D14: 70 dependencies whose connects stay in flight (a listener whose accept
    queue is full drops their SYNs) under `ulimit -n 64`: the first attempts take every fd
    before the scheduler's wake-up pair is made. That is a local resource limit, reported
    as one and retried, not `internal error: OSError: [Errno 24]` (exit 70)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue: further SYNs are dropped
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        cfg = tmp_path / "w.yaml"
        cfg.write_text("dependencies:\n" + "".join(
            f"  - {{name: d{i}, url: 'tcp://127.0.0.1:{port}'}}\n" for i in range(70)))
        proc = waitfor("wait", "-c", cfg, "-t", "2s", "--attempt-timeout", "1s",
                       prefix=["bash", "-c", 'ulimit -n 64; exec "$@"', "bash"],
                       capture_output=True, text=True, timeout=60, cwd=REPO, env=clean_env())
    finally:
        for c in fillers:
            c.close()
        srv.close()
    assert proc.returncode == 124, proc
    assert "internal error" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    reasons = [ln for ln in proc.stderr.splitlines() if "Too many open files" in ln]
    assert reasons and all("local resource limit" in ln for ln in reasons), proc.stderr


# ------------------------------------------------------------------ no thread to be had


@contextlib.contextmanager
def pids_cgroup(limit: int):
    """A pids cgroup the test creates (v1 or v2), its pids.max set to `limit`: -> its path.
    Processes join it by writing their pid to its cgroup.procs. Removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a cgroup")
    for root in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        path = f"{root}/waitfor-test-{os.getpid()}"
        try:
            os.mkdir(path)
        except OSError:
            continue
        if os.path.exists(f"{path}/pids.max"):
            break
        os.rmdir(path)
    else:
        pytest.skip("no pids cgroup controller to create a group in")
    try:
        with open(f"{path}/pids.max", "w") as f:
            f.write(str(limit))
        yield path
    finally:
        with open(f"{path}/pids.max", "w") as f:
            f.write("max")
        for _ in range(100):  # its processes have ended (the test waited for them)
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.05)


def test_a_pool_thread_that_cannot_start_is_a_local_limit_and_retried():
    """pids.max 2: waitfor's main thread and the scheduler; the pool's first thread cannot
    start. Before: "cannot become ready: ... internal error: can't start new thread", exit 1.
    Once the limit is raised, the next attempt finds the server ready."""
    from helpers.core import HttpServer

    with HttpServer() as srv, pids_cgroup(2) as group:
        proc = spawn("wait", "-t", "20s", "--attempt-timeout", "1s", f"http://127.0.0.1:{srv.port}/",
                     prefix=["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh"],
                     cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        with open(f"{group}/pids.max", "w") as f:
            f.write("64")
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "local resource limit: cannot start a thread" in err, err
    assert "cannot become ready" not in err and "internal error" not in err, err


def test_a_command_probe_whose_reaper_cannot_start_ends_its_program(tmp_path):
    """pids.max 2: the interpreter and the probe's program; the thread that waits for the
    program cannot start. The attempt is a local limit, and the program does not outlive it."""
    tag = f"31.{os.getpid()}"
    code = ("import sys\n"
            "from waitfor.config.model import Dependency\n"
            "from waitfor.probes.base import NotReady\n"
            "from waitfor.probes.table import build_probe\n"
            f"probe = build_probe(Dependency('c', 'command', '', argv=('sleep', {tag!r})))\n"
            "with open(sys.argv[1], 'w') as f:\n"
            "    f.write('0')\n"
            "try:\n"
            "    print('ready', probe(5.0))\n"
            "except NotReady as e:\n"
            "    print('NotReady', e)\n")
    with pids_cgroup(2) as group:
        proc = subprocess.run([PY, "-c", code, f"{group}/cgroup.procs"], capture_output=True,
                              text=True, timeout=30, cwd=REPO, env=clean_env())
    left = sleepers(tag)
    for p in left:
        p.kill()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("NotReady local resource limit: cannot start a thread"), proc.stdout
    assert not left, "the program outlived its attempt"


# ------------------------------------------------------------------ no /proc


def without_proc(tmp_path, yaml_text: str, *args: str) -> subprocess.CompletedProcess:
    """waitfor in a private mount namespace (`unshare -m`) with a tmpfs over /proc."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a mount namespace")
    cfg = tmp_path / "w.yaml"
    cfg.write_text(yaml_text)
    proc = waitfor("wait", "-c", str(cfg), *args,
                   prefix=["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /proc || exit 99; exec "$@"', "sh"],
                   timeout=60, cwd=REPO, env=clean_env())
    if proc.returncode == 99 or "unshare:" in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs over /proc here: {proc.stderr.strip()}")
    return proc


def test_without_proc_a_command_that_exits_0_is_ready(tmp_path):
    """Before: "waiting: list index out of range" (psutil's listing of an empty /proc)."""
    proc = without_proc(tmp_path, "dependencies:\n  - command: [\"true\"]\n", "-t", "5s")
    assert proc.returncode == 0, proc.stderr
    assert "ready" in proc.stderr, proc.stderr


def test_without_proc_the_deadline_is_a_timeout_not_an_internal_error(tmp_path):
    """Before: exit 70, "internal error: IndexError" from the sweep at the deadline."""
    tag = f"32.{os.getpid()}"
    proc = without_proc(tmp_path, f"dependencies:\n  - command: [sleep, \"{tag}\"]\n", "-t", "1s")
    time.sleep(0.3)
    left = sleepers(tag)
    for p in left:
        p.kill()
    assert proc.returncode == 124, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr
    assert not left, "the probe's program outlived the wait (its group is still killed)"
