"""Fixtures of the end-to-end tests: waitfor in a real container runtime (podman).

No registry can be pulled here, so the session builds everything locally:
1. a base image from debootstrap (Debian minbase with python3, pip and waitfor's
   dependencies from Debian), imported with `podman import` and cached between runs
   (`podman image exists` skips the ~40 s debootstrap);
2. the test image, from docker/Dockerfile.pip with that base and a copy of this checkout
   as its context (its wheels stage builds waitfor's wheel offline, `--no-deps
   --no-build-isolation`), `podman build --format docker` (an OCI image would drop the
   HEALTHCHECK);
3. for the bundle tests (test_bundle_container.py): a second debootstrap base without
   Python at all, and dist/waitfor-full of packaging/bundle.sh copied into it.

podman needs four adjustments on these machines (containers.conf and storage.conf written
below, passed to every podman call through CONTAINERS_CONF and CONTAINERS_STORAGE_CONF):
nofile ulimit no higher than the hard limit, runc instead of crun (hybrid cgroups), health
checks run by hand (`podman healthcheck run`, no systemd timers), Docker-format images.

Storage lives under $WAITFOR_E2E_ROOT (default /var/tmp/waitfor-e2e), never in the repo.
Other environment variables: WAITFOR_E2E_MIRROR (Debian mirror; default: the one apt uses),
WAITFOR_E2E_SUITE (default bookworm). Setup on a fresh machine: bash .ci/e2e-setup.sh.
"""

import contextlib
import fcntl
import glob
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from helpers.core import REPO

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("WAITFOR_E2E_ROOT", "/var/tmp/waitfor-e2e"))
SUITE = os.environ.get("WAITFOR_E2E_SUITE", "bookworm")
BASE_IMAGE = f"localhost/waitfor-e2e-base:{SUITE}-py-wheel"
# Debian's python3 plus waitfor's dependencies (so the image needs no PyPI), pip, and what
# builds waitfor's wheel without PyPI (setuptools, wheel).
BASE_PACKAGES = "python3,python3-pip,python3-psutil,python3-tenacity,python3-yaml,python3-setuptools,python3-wheel"
# Debian minbase and nothing else: no Python (the bundle's image).
NOPY_IMAGE = f"localhost/waitfor-e2e-base:{SUITE}-nopy"
SETUP_HINT = "run `bash .ci/e2e-setup.sh` as root"


def _log(msg):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- podman


class Podman:
    """Runs podman with this session's config files; every call is bounded."""

    def __init__(self, conf_dir: Path):
        self.env = dict(os.environ)
        self.env.update(
            CONTAINERS_CONF=str(conf_dir / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(conf_dir / "storage.conf"),
            DISABLE_HC_SYSTEMD="true",  # no systemd: do not even try to add timers
        )
        self.env.pop("CONTAINER_HOST", None)
        self.env.pop("DOCKER_HOST", None)

    def __call__(self, *args, timeout=60, check=True, input=None):
        cmd = ["podman", *map(str, args)]
        try:
            p = subprocess.run(cmd, env=self.env, input=input, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"timed out after {timeout}s: {' '.join(cmd)}\n{e.stderr or ''}") from None
        if check and p.returncode != 0:
            raise AssertionError(f"exit {p.returncode}: {' '.join(cmd)}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def inspect(self, name, fmt):
        return self("inspect", name, "--format", fmt).stdout.strip()

    def health(self, name):
        return self.inspect(name, "{{.State.Health.Status}}")

    def exit_code(self, name):
        return int(self.inspect(name, "{{.State.ExitCode}}"))

    def logs(self, name):
        p = self("logs", name, check=False)
        return p.stdout + p.stderr

    def wait_for_log(self, name, text, timeout=20.0):
        """Wait until the container's output contains `text`; return the output."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.logs(name)
            if text in out:
                return out
            state = self.inspect(name, "{{.State.Status}}")
            if state in ("exited", "stopped"):
                raise AssertionError(f"{name} {state} before printing {text!r}:\n{out}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: no {text!r} within {timeout}s:\n{out}")
            time.sleep(0.1)

    def wait_exit(self, name, timeout=30.0):
        """`podman wait` with a bound; return the exit code."""
        p = self("wait", name, timeout=timeout)
        return int(p.stdout.strip().splitlines()[-1])


def _skip(reason):
    pytest.skip(f"e2e: {reason}", allow_module_level=False)


def _check_prerequisites():
    if not sys.platform.startswith("linux"):
        _skip("podman containers need Linux")
    if os.geteuid() != 0:
        _skip("needs root (rootful podman; rootless needs subuids and a user session)")
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            _skip(f"{tool} is not installed ({SETUP_HINT})")


def _write_conf(conf_dir: Path, run_root: Path):
    conf_dir.mkdir(parents=True, exist_ok=True)
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1048576 if hard == resource.RLIM_INFINITY else min(hard, 1048576)
    (conf_dir / "containers.conf").write_text(
        "# written by tests/e2e/conftest.py\n"
        "[containers]\n"
        # podman asks for 1048576 open files by default, more than the VM's hard limit
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n'
        "[engine]\n"
        # crun 1.8 refuses hybrid cgroup v1/v2 hosts
        'runtime = "runc"\n'
        # podman's own transient files, apart from any other podman on the machine
        f'tmp_dir = "{run_root / "libpod"}"\n'
    )
    (conf_dir / "storage.conf").write_text(
        "# written by tests/e2e/conftest.py\n"
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{ROOT / "storage"}"\n'
        f'runroot = "{run_root}"\n'
    )


def debian_mirror() -> str:
    """The Debian mirror that apt on this machine uses (deb822 .sources, then sources.list)."""
    if os.environ.get("WAITFOR_E2E_MIRROR"):
        return os.environ["WAITFOR_E2E_MIRROR"]
    candidates = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for block in re.split(r"\n\s*\n", text):
            fields = {}
            for line in block.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, val = line.partition(":")
                fields[key.strip().lower()] = val.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"])[0] != "no":
                candidates += fields.get("uris", [])
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                candidates.append(words[1])
    for uri in candidates:
        if "security" not in uri and uri.startswith(("http://", "https://", "file:")):
            return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def _build_base_image(podman: Podman, image=BASE_IMAGE, packages=BASE_PACKAGES,
                      changes=("ENV PIP_BREAK_SYSTEM_PACKAGES=1",)):
    """debootstrap + podman import, once per machine (guarded by a lock for parallel runs)."""
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / "base-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if podman("image", "exists", image, check=False).returncode == 0:
            _log(f"base image {image} is cached")
            return
        if shutil.which("debootstrap") is None:
            _skip(f"debootstrap is not installed and {image} is not cached ({SETUP_HINT})")
        for stale in ROOT.glob("rootfs-*"):  # from an interrupted run (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        mirror = debian_mirror()
        rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=ROOT))
        try:
            _log(f"debootstrap {SUITE} from {mirror} (about 40 s, once)")
            t0 = time.monotonic()
            p = subprocess.run(
                ["debootstrap", "--variant=minbase", *([f"--include={packages}"] if packages else []),
                 SUITE, str(rootfs), mirror],
                capture_output=True, text=True, timeout=600,
            )
            if p.returncode != 0:
                log = (rootfs / "debootstrap" / "debootstrap.log")
                tail = log.read_text()[-2000:] if log.exists() else p.stderr[-2000:]
                raise AssertionError(f"debootstrap failed ({p.returncode}):\n{p.stdout[-2000:]}\n{tail}")
            _log(f"debootstrap took {time.monotonic() - t0:.1f}s; importing")
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            try:
                # Debian's python is "externally managed" (PEP 668): let the Dockerfile's
                # plain `pip install` through, as on python:3.x-slim.
                imp = subprocess.run(
                    ["podman", "import", "-q", *[a for c in changes for a in ("--change", c)], "-", image],
                    stdin=tar.stdout, env=podman.env, capture_output=True, text=True, timeout=300,
                )
            finally:
                tar.stdout.close()
                tar.wait(timeout=60)
            if imp.returncode != 0:
                raise AssertionError(f"podman import failed: {imp.stderr}")
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def e2e_session(tmp_path_factory):
    """The session's id, work folder and podman runner (skips when podman cannot run)."""
    _check_prerequisites()
    sid = uuid.uuid4().hex[:8]
    work = tmp_path_factory.mktemp("e2e")
    run_root = Path(tempfile.gettempdir()) / "waitfor-e2e-run"
    _write_conf(work / "conf", run_root)
    podman = Podman(work / "conf")
    p = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=60)
    if p.returncode != 0:
        _skip(f"`podman info` fails: {p.stderr.strip()[-500:]}")
    return sid, work, podman


@pytest.fixture(scope="session")
def podman(e2e_session):
    return e2e_session[2]


@pytest.fixture(scope="session")
def image(e2e_session):
    """The test image: docker/Dockerfile.pip on the debootstrap base, built from a copy of
    this checkout (as `podman build -f docker/Dockerfile.pip .` from the root would)."""
    sid, work, podman = e2e_session
    _build_base_image(podman)
    ctx = work / "ctx"
    shutil.copytree(REPO, ctx, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", ".venv", "tests", "bench"))
    # The image's default config; the tests mount their own over it.
    (ctx / "docker" / "waitfor.yaml").write_text("health:\n  - http://localhost:8000/healthz\n")
    tag = f"localhost/waitfor-e2e:{sid}"
    t0 = time.monotonic()
    podman(
        "build", "--format", "docker", "-q",
        "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        # offline: waitfor only; psutil, tenacity and yaml come from Debian in the base
        "--build-arg", "WHEEL_ARGS=--no-deps --no-build-isolation",
        "--build-arg", "INSTALL_ARGS=--no-deps",
        "-f", ctx / "docker" / "Dockerfile.pip", "-t", tag, ctx,
        timeout=300,
    )
    _log(f"built {tag} in {time.monotonic() - t0:.1f}s")
    yield tag
    podman("rmi", "-f", tag, check=False, timeout=60)


@pytest.fixture(scope="session")
def py_base(e2e_session):
    """The Debian base with python3 (BASE_IMAGE), built once."""
    _build_base_image(e2e_session[2])
    return BASE_IMAGE


@pytest.fixture(scope="session")
def nopy_base(e2e_session):
    """A Debian minbase image without Python (test_bundle_container.py), built once."""
    _build_base_image(e2e_session[2], NOPY_IMAGE, packages="", changes=())
    return NOPY_IMAGE


@pytest.fixture
def containers(e2e_session):
    """A factory of unique container names; every container is removed afterwards."""
    sid, _, podman = e2e_session
    names = []

    def new(label="c"):
        name = f"wfe2e-{sid}-{label}-{len(names)}"
        names.append(name)
        return name

    yield new
    for name in names:
        podman("rm", "-f", "-t", "0", name, check=False, timeout=60)


@pytest.fixture
def mounts(tmp_path):
    """mounts(config_text) -> podman run options that mount the test app at /app/app.py
    and a waitfor config with that text at /etc/waitfor.yaml (where ENTRYPOINT and
    WAITFOR_CONFIG look)."""

    def make(config_text="# no dependencies\n"):
        cfg = tmp_path / f"waitfor-{len(list(tmp_path.glob('waitfor-*.yaml')))}.yaml"
        cfg.write_text(config_text)
        return ["-v", f"{cfg}:/etc/waitfor.yaml:ro", "-v", f"{HERE / 'app.py'}:/app/app.py:ro"]

    return make


class HealthLoop:
    """Stands in for podman's systemd timers: `podman healthcheck run` for every running
    container with the given label, every `interval` seconds, in a thread."""

    def __init__(self, podman: Podman, label: str, interval: float = 1.0):
        self.podman, self.label, self.interval = podman, label, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="healthcheck-loop", daemon=True)

    def _loop(self):
        while not self.stopped.is_set():
            try:
                ids = self.podman("ps", "-q", "--filter", f"label={self.label}", check=False, timeout=20).stdout.split()
                for cid in ids:
                    self.podman("healthcheck", "run", cid, check=False, timeout=20)
            except AssertionError:
                pass  # a timed-out call: try again on the next round
            self.stopped.wait(self.interval)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopped.set()
        self.thread.join(timeout=30)


def _ping(sock_path: str) -> bool:
    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(2)
            self.sock.connect(sock_path)

    try:
        c = Conn("localhost", timeout=2)
        c.request("GET", "/_ping")
        return c.getresponse().status == 200
    except OSError:
        return False


@pytest.fixture
def compose(e2e_session, image, tmp_path):
    """docker-compose against podman's API socket, with the health-check loop beside it.

    Yields run(*args, timeout) for docker-compose in a project folder (tmp_path) whose
    compose file the test writes; afterwards: `down`, then the loop and the service stop.
    """
    if shutil.which("docker-compose") is None:
        _skip(f"docker-compose is not installed ({SETUP_HINT})")
    sid, _, podman = e2e_session
    project = f"wfe2e{sid}"
    sock_dir = Path(tempfile.mkdtemp(prefix="waitfor-e2e-sock-"))
    sock = sock_dir / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        env=podman.env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "podman-service.log", "w"),
    )
    loop = None
    env = dict(podman.env, DOCKER_HOST=f"unix://{sock}", COMPOSE_PROJECT_NAME=project,
               COMPOSE_INTERACTIVE_NO_CLI="1", TEST_IMAGE=image)

    def run(*args, timeout=120, check=True):
        cmd = ["docker-compose", *args]
        try:
            p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"timed out after {timeout}s: {' '.join(cmd)}\n{e.stderr or ''}") from None
        if check and p.returncode != 0:
            raise AssertionError(f"exit {p.returncode}: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
        return p

    try:
        deadline = time.monotonic() + 30
        while not _ping(str(sock)):
            if service.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("podman system service did not come up: "
                                     + (tmp_path / "podman-service.log").read_text()[-2000:])
            time.sleep(0.1)
        loop = HealthLoop(podman, f"com.docker.compose.project={project}").start()
        run.project, run.dir = project, tmp_path
        yield run
    finally:
        with contextlib.suppress(AssertionError):
            run("down", "--volumes", "--timeout", "2", timeout=90, check=False)
        if loop is not None:
            loop.stop()
        # whatever `down` left behind (it failed, or timed out)
        left = podman("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}", check=False).stdout.split()
        if left:
            podman("rm", "-f", "-t", "0", *left, check=False)
        podman("network", "rm", "-f", f"{project}_default", check=False)
        service.terminate()
        try:
            service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=15)
        shutil.rmtree(sock_dir, ignore_errors=True)
