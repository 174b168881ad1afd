"""The self-contained bundles (packaging/bundle.sh): the same CLI and behaviour as
the pip install, from dist/waitfor-slim/waitfor and dist/waitfor-full/waitfor.

The session fixture runs `bash packaging/bundle.sh` (cached by a hash of its inputs: a
second run takes under a second); the first build takes about a minute and needs PyPI for
PyInstaller. Every test runs the real frozen executable: real listeners on 127.0.0.1, real
processes, `unshare --pid --fork --mount-proc` for PID 1. The apps are small `sh` scripts,
as in an image without Python.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import waitfor
from helpers.core import REPO, TcpServer, clean_env, free_port
from helpers.pid1 import NS, child_pids, pid_namespace_unavailable

DIST = REPO / "dist"
PG = ("127.0.0.1", 5432)  # the local PostgreSQL of .ci/services.sh (user postgres, trust)


@pytest.fixture(scope="session")
def bundles():
    """{"slim": path, "full": path} of the two executables, built (or found cached)."""
    try:
        p = subprocess.run(["bash", str(REPO / "packaging" / "bundle.sh")], capture_output=True, text=True,
                           timeout=1200, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail("packaging/bundle.sh took more than 20 minutes")
    if p.returncode == 3:  # bundle.sh: PyInstaller or the dependencies could not be installed
        pytest.skip(f"PyInstaller cannot be installed here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, f"bundle.sh failed ({p.returncode}):\n{p.stdout}\n{p.stderr[-4000:]}"
    return {kind: DIST / f"waitfor-{kind}" / "waitfor" for kind in ("slim", "full")}


@pytest.fixture
def slim(bundles):
    return str(bundles["slim"])


@pytest.fixture
def full(bundles):
    return str(bundles["full"])


def run(*argv, timeout=60, **kw):
    kw.setdefault("env", clean_env())
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)


def accepts(host, port) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_for_file(path: Path, text: str, timeout=20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        got = path.read_text() if path.exists() else ""
        if text in got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in {path} within {timeout}s: {got!r}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- the build


def test_layout_and_tarballs(bundles):
    for kind, exe in bundles.items():
        assert os.access(exe, os.X_OK), exe
        tarball = DIST / f"waitfor-{kind}.tar.gz"
        listing = run("tar", "-tzf", tarball).stdout.split()
        assert f"waitfor-{kind}/waitfor" in listing, listing[:10]
        assert all(name.startswith(f"waitfor-{kind}/") for name in listing)


def test_second_run_is_cached(bundles):
    t0 = time.monotonic()
    p = run("bash", REPO / "packaging" / "bundle.sh", cwd=REPO)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert "up to date" in p.stderr
    assert took < 30, f"a cached run took {took:.1f}s"  # bounded: a build takes a minute


@pytest.mark.parametrize("kind", ["slim", "full"])
def test_version(bundles, kind):
    p = run(bundles[kind], "--version")
    assert (p.returncode, p.stdout.strip()) == (0, f"waitfor {waitfor.__version__}"), p.stderr


# --------------------------------------------------------------------------- the CLI


def test_exit_code_passes_through(slim):
    p = run(slim, "run", "--", "sh", "-c", "exit 3")
    assert p.returncode == 3, p.stderr


def test_exec_failure_codes(slim):
    assert run(slim, "run", "--", "/nonexistent/app").returncode == 127
    assert run(slim, "run", "--", "/etc/hostname").returncode == 126


def test_bad_flag_is_exit_2_in_one_line(slim):
    p = run(slim, "run", "--timeout", "soon", "--", "true")
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "--timeout" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_waits_for_a_late_tcp_listener(slim):
    with TcpServer(delay=0.8) as server:
        p = run(slim, "run", "-t", "20s", f"tcp://127.0.0.1:{server.port}", "--", "sh", "-c", "echo app ran")
        assert p.returncode == 0, p.stderr
        assert "app ran" in p.stdout
        assert server.accepted >= 1


def test_not_ready_in_time_is_124(slim):
    port = free_port()
    p = run(slim, "run", "-t", "300ms", f"tcp://127.0.0.1:{port}", "--", "sh", "-c", "echo never")
    assert p.returncode == 124, p.stderr
    assert "never" not in p.stdout


def test_app_gets_its_own_environment_not_the_bootloaders(slim):
    """PyInstaller's bootloader prepends the bundle to LD_LIBRARY_PATH and sets _PYI_*
    variables; the app must not inherit them (cli.unfreeze_environ)."""
    show = 'echo "LD=${LD_LIBRARY_PATH-unset}"; env | grep -c "^_PYI_\\|^_MEIPASS" || true'
    e = clean_env()
    e.pop("LD_LIBRARY_PATH", None)
    p = run(slim, "run", "--", "sh", "-c", show, env=e)
    assert p.stdout.split() == ["LD=unset", "0"], p.stdout
    p = run(slim, "run", "--init", "--", "sh", "-c", show, env=clean_env(LD_LIBRARY_PATH="/mine"))
    assert p.stdout.split() == ["LD=/mine", "0"], (p.stdout, p.stderr)


def test_health(slim, tmp_path):
    with TcpServer() as server:
        port = server.port
        cfg = tmp_path / "waitfor.yaml"
        cfg.write_text(f"dependencies:\n  - tcp://127.0.0.1:{port}\n")
        p = run(slim, "health", env=clean_env(WAITFOR_CONFIG=str(cfg), WAITFOR_STATE_FILE=str(tmp_path / "s.json")))
        assert p.returncode == 0, p.stderr
    p = run(slim, "health", env=clean_env(WAITFOR_CONFIG=str(cfg), WAITFOR_STATE_FILE=str(tmp_path / "s.json")))
    assert p.returncode == 1, p.stderr


# --------------------------------------------------------------------------- drivers


def test_missing_driver_in_slim_names_the_full_bundle(slim):
    p = run(slim, "run", "postgres://postgres@127.0.0.1:5432/postgres", "--", "sh", "-c", "echo never")
    assert p.returncode == 2, p.stderr
    assert "waitfor-full" in p.stderr and "postgres" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert "never" not in p.stdout


@pytest.mark.drivers
def test_full_bundle_probes_postgres(full):
    if not accepts(*PG):
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 (bash .ci/services.sh starts one)")
    p = run(full, "check", "-t", "20s", "postgres://postgres@127.0.0.1:5432/postgres")
    assert p.returncode == 0, p.stderr
    assert "SELECT 1 ok" in p.stdout + p.stderr


def test_full_bundle_has_every_driver(full):
    """Every driver kind is in the full bundle: the driver is imported when the config is
    built (slim stops there with exit 2), so a closed port gives `check`'s plain FAIL (1)."""
    for url in ["mysql://127.0.0.1:1/x", "redis://127.0.0.1:1", "amqp://127.0.0.1:1", "mqtt://127.0.0.1:1",
                "nats://127.0.0.1:1", "grpc://127.0.0.1:1"]:
        p = run(full, "check", "-t", "200ms", "--attempt-timeout", "100ms", url)
        assert "not in this bundle" not in p.stderr, (url, p.stderr)
        assert (p.returncode, p.stdout.split()[:1]) == (1, ["FAIL"]), (url, p.returncode, p.stdout, p.stderr)
        p = run(bundles_slim(full), "check", "-t", "200ms", url)
        assert p.returncode == 2 and "waitfor-full" in p.stderr, (url, p.returncode, p.stderr)


def bundles_slim(full: str) -> str:
    return full.replace("waitfor-full", "waitfor-slim")


# --------------------------------------------------------------------------- PID 1


PID1_APP = r"""
# An orphan: the inner sh exits at once, so its `sleep` is re-parented to PID 1.
orphan=$(sh -c 'sleep 0.3 >/dev/null 2>&1 & echo $!')
sleep 1.2
if [ -e /proc/$orphan ]; then
    echo "orphan $orphan state $(sed 's/.*) //' /proc/$orphan/stat | cut -d' ' -f1)" >> "$OUT"
else
    echo "orphan reaped" >> "$OUT"
fi
echo "pid1 $(tr '\0' ' ' < /proc/1/cmdline)" >> "$OUT"
trap 'echo "got TERM" >> "$OUT"; exit 143' TERM
echo ready >> "$OUT"
while :; do sleep 0.1; done
"""


@pytest.mark.pid1
def test_as_pid1_reaps_orphans_and_forwards_term(slim, tmp_path):
    why = pid_namespace_unavailable()
    if why:
        pytest.skip(why)
    out = tmp_path / "out"
    proc = subprocess.Popen(NS + [slim, "run", "--", "sh", "-c", PID1_APP], env=clean_env(OUT=str(out)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        got = wait_for_file(out, "ready")
        assert "orphan reaped" in got, got
        # PID 1 shows as `waitfor -- COMMAND` (the lean supervisor re-exec'd from the
        # bundle's own executable), not as a Python one-liner or the hidden entry.
        pid1 = got.split("pid1 ", 1)[1].splitlines()[0]
        assert pid1.startswith(("waitfor -- sh", f"{slim} -- sh")), pid1
        assert "python" not in pid1 and "_supervise" not in pid1, pid1
        init = child_pids(proc.pid)[0]  # unshare's child: the namespace's PID 1
        os.kill(init, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert "got TERM" in out.read_text()
        assert proc.returncode == 143, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_probe_endpoint_and_watch(slim):
    """--probe-addr and the runtime watch (the in-process supervisor) from the bundle:
    /readyz 200 while the dependency is up, 503 once it is gone; TERM ends the app."""
    import http.client

    port = free_port()
    with TcpServer() as dep:
        proc = subprocess.Popen([slim, "run", "--probe-addr", f"127.0.0.1:{port}", "--watch-interval", "200ms",
                                 "--failure-threshold", "50", f"tcp://127.0.0.1:{dep.port}", "--",
                                 "sh", "-c", "trap 'exit 143' TERM; while :; do sleep 0.1; done"],
                                env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def readyz():
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                try:
                    c.request("GET", "/readyz")
                    return c.getresponse().status
                finally:
                    c.close()

            deadline = time.monotonic() + 20
            status = None
            while status != 200 and time.monotonic() < deadline:
                try:
                    status = readyz()
                except OSError:
                    time.sleep(0.1)
            assert status == 200
        except BaseException:
            proc.kill()
            proc.communicate(timeout=10)
            raise
    try:
        deadline = time.monotonic() + 20
        while readyz() != 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert readyz() == 503
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 143, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
