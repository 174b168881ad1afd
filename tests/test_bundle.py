"""The self-contained bundles (packaging/bundle.sh): the same CLI and behaviour as
the pip install, from dist/waitfor-slim/waitfor and dist/waitfor-full/waitfor, and the same
again for the arm64 bundles, dist/waitfor-slim-arm64 and dist/waitfor-full-arm64,
under qemu user emulation.

The session fixture runs `bash packaging/bundle.sh [--arch arm64]` (cached by a hash of its
inputs: a second run takes under a second); the first build takes about a minute natively
(8 under emulation, plus about 6 for the arm64 root once per machine) and needs PyPI for
PyInstaller. Every test runs the real frozen executable: real listeners on 127.0.0.1, real
processes, `unshare --pid --fork --mount-proc` for PID 1. The apps are small `sh` scripts,
as in an image without Python.

arm64 on an amd64 machine: the arm64 executable runs through the binfmt_misc entry that
packaging/arm64-root.sh registers (qemu 10), with QEMU_LD_PREFIX pointing at the arm64 root,
where qemu finds the arm64 dynamic loader and glibc (the bundle carries everything else).
One check cannot hold there and is skipped by name: PID 1's command line (under emulation
/proc/PID/cmdline of an emulated process is qemu's own command line, which names the
program after the emulator). PID 1 inside the arm64 root itself (its arm64 sh as the app)
is test_as_pid1_inside_the_arm64_root.
"""

import hashlib
import json
import os
import platform
import shutil
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


HOST = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
QEMU = "under qemu user emulation"
CMDLINE_UNDER_QEMU = f"{QEMU}, /proc/PID/cmdline of an emulated process is qemu's command line"


class Bundles(dict):
    """{"slim": path, "full": path} of one architecture's executables, and how they run."""

    arch: str
    suffix: str
    root: str | None = None  # the arm64 root (packaging/arm64-root.sh) when emulated

    @property
    def emulated(self) -> bool:
        return self.arch != HOST


def build(arch: str) -> subprocess.CompletedProcess:
    argv = ["bash", str(REPO / "packaging" / "bundle.sh")] + ([] if arch == HOST else ["--arch", arch])
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=2400, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(argv)} took more than 40 minutes")


@pytest.fixture(scope="session", params=["amd64", "arm64"])
def bundles(request):
    """The bundles of one architecture, built (or found cached); the host's natively, the
    other one under emulation."""
    arch = request.param
    if arch != HOST and (HOST, arch) != ("amd64", "arm64"):
        pytest.skip(f"{arch} bundles are built on amd64 hosts only (this one is {HOST})")
    if arch != HOST and os.geteuid() != 0:
        pytest.skip(f"the {arch} bundles need root here (binfmt_misc, debootstrap, chroot: packaging/arm64-root.sh)")
    p = build(arch)
    if p.returncode == 3:  # bundle.sh: PyInstaller, the dependencies or the arm64 root could not be set up
        pytest.skip(f"the {arch} bundles cannot be built here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, f"bundle.sh failed ({p.returncode}):\n{p.stdout}\n{p.stderr[-4000:]}"
    b = Bundles()
    b.arch, b.suffix = arch, ("" if arch == "amd64" else f"-{arch}")
    b.update({kind: DIST / f"waitfor-{kind}{b.suffix}" / "waitfor" for kind in ("slim", "full")})
    if not b.emulated:
        yield b
        return
    root = subprocess.run(["bash", str(REPO / "packaging" / "arm64-root.sh")], capture_output=True, text=True,
                          timeout=600, check=True).stdout.split()[-1]
    b.root = root
    # qemu finds the arm64 loader and glibc there; every process of the tests inherits it
    # (an amd64 process ignores it).
    os.environ["QEMU_LD_PREFIX"] = root
    try:
        yield b
    finally:
        os.environ.pop("QEMU_LD_PREFIX", None)


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


ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}  # e_machine: EM_X86_64, EM_AARCH64


def test_layout_and_tarballs(bundles):
    for kind, exe in bundles.items():
        assert os.access(exe, os.X_OK), exe
        name = f"waitfor-{kind}{bundles.suffix}"
        tarball = DIST / f"{name}.tar.gz"
        listing = run("tar", "-tzf", tarball).stdout.split()
        assert f"{name}/waitfor" in listing, listing[:10]
        assert all(n.startswith(f"{name}/") for n in listing)
        header = Path(exe).read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_MACHINE[bundles.arch]


def test_second_run_is_cached(bundles):
    t0 = time.monotonic()
    p = run("bash", REPO / "packaging" / "bundle.sh", *([] if bundles.arch == HOST else ["--arch", bundles.arch]),
            cwd=REPO)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert "up to date" in p.stderr
    assert took < 30, f"a cached run took {took:.1f}s"  # bounded: a build takes a minute


@pytest.mark.parametrize("kind", ["slim", "full"])
def test_version(bundles, kind):
    p = run(bundles[kind], "--version", timeout=120)
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
        init = child_pids(proc.pid)[0]  # unshare's child: the namespace's PID 1
        os.kill(init, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert "got TERM" in out.read_text()
        assert proc.returncode == 143, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.mark.pid1
def test_pid1_shows_as_waitfor(bundles, slim):
    """PID 1 shows as `waitfor -- COMMAND` (the lean supervisor re-exec'd from the bundle's
    own executable), not as a Python one-liner or the hidden entry."""
    if bundles.emulated:
        pytest.skip(CMDLINE_UNDER_QEMU)
    why = pid_namespace_unavailable()
    if why:
        pytest.skip(why)
    p = run(*NS, slim, "run", "--", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline")
    assert p.returncode == 0, p.stderr
    pid1 = p.stdout.strip()
    assert pid1.startswith(("waitfor -- sh", f"{slim} -- sh")), pid1
    assert "python" not in pid1 and "_supervise" not in pid1, pid1


ROOT_APP = r"""
orphan=$(sh -c 'sleep 0.3 >/dev/null 2>&1 & echo $!')
sleep 2
if [ -e /proc/$orphan ]; then echo "orphan $orphan left" >> /tmp/out; else echo "orphan reaped" >> /tmp/out; fi
echo "uname $(uname -m)" >> /tmp/out
trap 'echo "got TERM" >> /tmp/out; exit 143' TERM
echo ready >> /tmp/out
while :; do sleep 0.1; done
"""


@pytest.mark.pid1
def test_as_pid1_inside_the_arm64_root(bundles, tmp_path):
    """The arm64 bundle as PID 1 of a PID namespace inside the arm64 root, as in an arm64
    image: its own /proc, the root's arm64 sh as the app (emulated too), a late dependency
    on the host's 127.0.0.1 (a chroot shares the network), an orphan reaped, TERM to PID 1
    forwarded to the app: 143."""
    if not bundles.emulated:
        pytest.skip("the host's bundles run on the host (test_as_pid1_reaps_orphans_and_forwards_term)")
    why = pid_namespace_unavailable()
    if why:
        pytest.skip(why)
    root = Path(bundles.root)
    inside = f"/opt/waitfor-test-{os.getpid()}"
    shutil.rmtree(root / inside.lstrip("/"), ignore_errors=True)
    shutil.copytree(Path(bundles["slim"]).parent, root / inside.lstrip("/"), symlinks=True)
    work = root / "tmp"
    (work / "out").unlink(missing_ok=True)
    proc = None
    try:
        with TcpServer(delay=1.0) as dep:
            proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--kill-child", f"--mount-proc={root}/proc", "chroot", str(root),
                 "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", f"{inside}/waitfor", "run", "-t", "60s",
                 f"tcp://127.0.0.1:{dep.port}", "--", "/bin/sh", "-c", ROOT_APP],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
            got = wait_for_file(work / "out", "ready", timeout=120)
            assert dep.accepted >= 1
        assert "orphan reaped" in got and "uname aarch64" in got, got
        init = child_pids(proc.pid)[0]  # unshare's child: the namespace's PID 1
        os.kill(init, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert "got TERM" in (work / "out").read_text()
        assert proc.returncode == 143, err
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        shutil.rmtree(root / inside.lstrip("/"), ignore_errors=True)


# --------------------------------------------------------------------------- the bill of materials


def sha256sum_check(folder: Path) -> None:
    p = run("sha256sum", "--strict", "-c", "SHA256SUMS", cwd=folder)
    assert p.returncode == 0, (folder, p.stdout[-2000:], p.stderr[-2000:])


@pytest.mark.parametrize("kind", ["slim", "full"])
def test_sbom_checksums_and_version_verbose(bundles, kind):
    """Beside every bundle: its CycloneDX SBOM (the same file in the folder), SHA256SUMS of
    dist/ and of the folder that verify; `--version --verbose` prints the components the
    SBOM lists: CPython, OpenSSL, every Python distribution, every shared library."""
    name = f"waitfor-{kind}{bundles.suffix}"
    folder = DIST / name
    sbom = json.loads((DIST / f"{name}.cdx.json").read_text())
    assert (folder / "sbom.cdx.json").read_text() == (DIST / f"{name}.cdx.json").read_text()
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    assert sbom["metadata"]["component"]["name"] == name
    comps = sbom["components"]
    by_name = {c["name"]: c for c in comps}
    sha256sum_check(DIST)
    sha256sum_check(folder)
    listed = set(run("sh", "-c", "cut -c67- SHA256SUMS", cwd=DIST).stdout.split())
    assert {f"{name}.tar.gz", f"{name}.cdx.json"} <= listed

    p = run(bundles[kind], "--version", "--verbose", timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0].startswith(f"waitfor {waitfor.__version__} (bundle in ") and out[0].endswith(
        {"amd64": "x86_64)", "arm64": "aarch64)"}[bundles.arch]), out[0]
    assert f"cpython {by_name['cpython']['version']}" in out
    assert any(line.startswith(f"openssl OpenSSL {by_name['openssl']['version']} ") for line in out), out

    pypi = {(c["name"], c["version"]) for c in comps if c.get("purl", "").startswith("pkg:pypi/")
            and not c["bom-ref"].startswith("file:")}
    wanted = {"psutil", "tenacity", "PyYAML", "pyinstaller"} | (
        {"psycopg", "psycopg-binary", "PyMySQL", "redis", "pika", "paho-mqtt", "nats-py", "grpcio"} if kind == "full"
        else set())
    assert wanted <= {n for n, _ in pypi}, sorted(pypi)
    if kind == "slim":
        assert not {"psycopg", "redis", "grpcio"} & {n for n, _ in pypi}
    packages = out[out.index("python packages:") + 1:out.index("shared libraries:")]
    assert {tuple(line.split()) for line in packages} == pypi

    libs = {c["name"]: c for c in comps if c["bom-ref"].startswith("file:")}
    on_disk = sorted(str(f.relative_to(folder / "_internal")) for f in (folder / "_internal").rglob("*")
                     if f.is_file() and not f.is_symlink() and (f.name.endswith(".so") or ".so." in f.name))
    assert sorted(c["bom-ref"][5:] for c in libs.values()) == on_disk
    assert out[out.index("shared libraries:") + 1:] == [f"  {rel}" for rel in on_disk]
    for rel in ("libssl.so.3", "libcrypto.so.3"):
        c = libs[rel]
        assert c["version"] and c["purl"].startswith("pkg:deb/debian/libssl3@"), c
        assert f"arch={bundles.arch}" in c["purl"], c
    for c in libs.values():  # every library: where from, and its hash in the bundle
        origin = {p["name"]: p["value"] for p in c["properties"]}["waitfor:origin"]
        assert origin != "unknown" and c.get("version"), c
        path = folder / "_internal" / c["bom-ref"][5:]
        assert c["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(path.read_bytes()).hexdigest()}]


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
