"""The self-contained bundle in a real container runtime: an image with no Python
at all, the full bundle copied in as docker/Dockerfile's app stage does, a non-root USER and
a read-only root. waitfor is PID 1: it waits for late dependencies (TCP, PostgreSQL),
passes the exit code through, reaps orphans, forwards `podman stop`'s TERM, and answers
HEALTHCHECK.

The image is docker/Dockerfile's `app` stage verbatim, except that `COPY --from=waitfor`
takes the bundle that packaging/bundle.sh built on this machine (no registry to pull the
builder from), on a Debian minbase without Python (debootstrap, cached). Containers use
--network host: the dependencies are listeners of this test on 127.0.0.1 and the local
PostgreSQL (bash .ci/services.sh), reached through a forwarder that the test opens late.
"""

import contextlib
import hashlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers.core import REPO, TcpServer, free_port

pytestmark = pytest.mark.e2e

PG = ("127.0.0.1", 5432)


def _log(msg):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _accepts(addr) -> bool:
    try:
        socket.create_connection(addr, timeout=1).close()
        return True
    except OSError:
        return False


class Forwarder:
    """A TCP forwarder 127.0.0.1:port -> target, listening only after `delay` seconds: a
    PostgreSQL that comes up late, without restarting the real one."""

    def __init__(self, target, delay, host="127.0.0.1", port=None):
        self.target, self.delay, self.host = target, delay, host
        self.port = port or free_port()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)

    def _serve(self):
        if self.stop.wait(self.delay):
            return
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.host, self.port))
            s.listen(16)
            s.settimeout(0.1)
            while not self.stop.is_set():
                try:
                    conn, _ = s.accept()
                except socket.timeout:
                    continue
                up = socket.create_connection(self.target, timeout=5)
                for a, b in ((conn, up), (up, conn)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _app_stage() -> str:
    """docker/Dockerfile from its `app` stage on, with the bundle from the build context."""
    text = (REPO / "docker" / "Dockerfile").read_text()
    stage = text[text.index("FROM ${BASE_IMAGE} AS app"):]
    assert "COPY --from=waitfor /opt/waitfor /opt/waitfor" in stage
    return "ARG BASE_IMAGE\n" + stage.replace("COPY --from=waitfor /opt/waitfor", "COPY waitfor-full")


@pytest.fixture(scope="session")
def bundle_image(e2e_session, nopy_base):
    _, work, podman = e2e_session
    p = subprocess.run(["bash", str(REPO / "packaging" / "bundle.sh")], capture_output=True, text=True,
                       timeout=1200, cwd=REPO)
    if p.returncode == 3:
        pytest.skip(f"e2e: PyInstaller cannot be installed here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr[-4000:]
    bundle = REPO / "dist" / "waitfor-full"
    containerfile = _app_stage()
    key = hashlib.sha256(((bundle / ".inputs-hash").read_text() + containerfile).encode()).hexdigest()[:16]
    tag = f"localhost/waitfor-e2e-bundle:{key}"
    # Older keys are of no use any more: keep one bundle image per machine. No -f: an image
    # that a container (another session's test) still uses stays.
    for old in podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/waitfor-e2e-bundle",
                      check=False).stdout.split():
        if old != tag:
            podman("rmi", old, check=False)
    if podman("image", "exists", tag, check=False).returncode == 0:
        _log(f"bundle image {tag} is cached")
        return tag
    ctx = work / "bundle-ctx"
    # docker/ as the stage's COPY lines expect it (config, templates), minus the k8s files
    shutil.copytree(REPO / "docker", ctx / "docker", ignore=shutil.ignore_patterns("k8s", "wheels", "*password*"))
    shutil.copytree(bundle, ctx / "waitfor-full", symlinks=True)
    (ctx / "docker" / "waitfor.yaml").write_text("# no dependencies (the tests mount their own)\n")
    (ctx / "Containerfile").write_text(containerfile)
    t0 = time.monotonic()
    podman("build", "--format", "docker", "-q", "--build-arg", f"BASE_IMAGE={nopy_base}",
           "-f", ctx / "Containerfile", "-t", tag, ctx, timeout=300)
    _log(f"built {tag} in {time.monotonic() - t0:.1f}s")
    return tag


def _run(podman, name, image, cfg, *command, extra=()):
    """podman run -d: host network, read-only root, the image's USER, config mounted."""
    return podman("run", "-d", "--name", name, "--network", "host", "--read-only",
                  "-v", f"{cfg}:/etc/waitfor.yaml:ro", *extra, image, *command)


def test_the_image_has_no_python_and_a_non_root_user(podman, bundle_image, containers):
    name = containers("nopy")
    p = podman("run", "--rm", "--name", name, "--entrypoint", "sh", bundle_image, "-c",
               "id -u; for d in /usr/bin /bin /usr/local/bin /usr/sbin; do ls $d; done | grep -c '^python' || true;"
               " command -v python3 || echo no-python3; command -v waitfor")
    uid, count, python, where = p.stdout.split()
    assert (uid, count, python) == ("10001", "0", "no-python3"), p.stdout
    assert where == "/opt/waitfor/waitfor"


def test_waits_for_late_tcp_and_postgres_then_passes_the_exit_code(podman, bundle_image, containers, tmp_path):
    if not _accepts(PG):
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 (bash .ci/services.sh starts one)")
    with TcpServer(delay=1.0) as tcp, Forwarder(PG, delay=2.5) as pg:
        cfg = tmp_path / "waitfor.yaml"
        cfg.write_text(f"timeout: 60s\ndependencies:\n  - tcp://127.0.0.1:{tcp.port}\n"
                       f"  - postgres://postgres@127.0.0.1:{pg.port}/postgres\n")
        cfg.chmod(0o644)
        name = containers("late")
        t0 = time.monotonic()
        _run(podman, name, bundle_image, cfg, "sh", "-c", "echo app started; exit 7")
        code = podman.wait_exit(name, timeout=60)
        took = time.monotonic() - t0
        logs = podman.logs(name)
    assert code == 7, logs
    assert "app started" in logs, logs
    assert took >= 2.5, f"the app ran after {took:.1f}s, before the late PostgreSQL was up:\n{logs}"
    assert tcp.accepted >= 1


PID1_APP = r"""
orphan=$(sh -c 'sleep 0.3 >/dev/null 2>&1 & echo $!')
sleep 1.2
if [ -e /proc/$orphan ]; then echo "orphan $orphan left: $(cat /proc/$orphan/stat)"; else echo "orphan reaped"; fi
trap 'echo "got TERM"; exit 143' TERM
echo ready
while :; do sleep 0.1; done
"""


def test_pid1_reaps_forwards_stop_and_flips_health(podman, bundle_image, containers, tmp_path):
    with TcpServer() as dep:
        cfg = tmp_path / "waitfor.yaml"
        cfg.write_text(f"health:\n  - tcp://127.0.0.1:{dep.port}\n")
        cfg.chmod(0o644)
        name = containers("pid1")
        # The image's HEALTHCHECK command, with no start period (podman 4.3 ignores the
        # failures in it) and one retry; podman 4.3 applies these only with --health-cmd.
        hc = json.loads(podman("image", "inspect", bundle_image, "--format", "{{json .Config.Healthcheck}}").stdout)
        assert hc["Test"] == ["CMD", "waitfor", "health"], hc
        _run(podman, name, bundle_image, cfg, "sh", "-c", PID1_APP,
             extra=("--health-cmd", json.dumps(hc["Test"][1:]), "--health-start-period", "0s", "--health-retries", "1"))
        logs = podman.wait_for_log(name, "ready", timeout=30)
        assert "orphan reaped" in logs, logs
        cmdline = podman("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")
        assert re.fullmatch(r"(/opt/waitfor/)?waitfor", cmdline[0]) and cmdline[1] == "--", cmdline
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        assert podman.health(name) == "healthy"
    # The dependency is gone: the HEALTHCHECK turns unhealthy.
    assert podman("healthcheck", "run", name, check=False).returncode == 1
    assert podman.health(name) == "unhealthy"
    t0 = time.monotonic()
    podman("stop", "-t", "10", name, timeout=30)
    took = time.monotonic() - t0
    assert podman.exit_code(name) == 143, podman.logs(name)
    assert "got TERM" in podman.logs(name)
    assert took < 8, f"podman stop took {took:.1f}s: TERM was not forwarded (SIGKILL after the grace)"


# Debian's python3 needs these to freeze (the python:3.x images have them): a venv,
# the shared libpython, and binutils' strip.
BUILDER_PACKAGES = "python3-venv libpython3.11 binutils"


@pytest.fixture(scope="session")
def builder_image(e2e_session, py_base):
    """A builder for docker/Dockerfile's `build` stage: the e2e Python base plus
    BUILDER_PACKAGES from the Debian mirror. Cached by both."""
    _, work, podman = e2e_session
    base = py_base
    tag = "localhost/waitfor-e2e-builder:" + hashlib.sha256((base + BUILDER_PACKAGES).encode()).hexdigest()[:12]
    if podman("image", "exists", tag, check=False).returncode != 0:
        ctx = work / "builder-ctx"
        ctx.mkdir()
        (ctx / "Containerfile").write_text(
            f"FROM {base}\nRUN apt-get update -q && apt-get install -y -q --no-install-recommends "
            f"{BUILDER_PACKAGES} && rm -rf /var/lib/apt/lists/*\n")
        podman("build", "-q", "-t", tag, "-f", ctx / "Containerfile", ctx, timeout=300)
    return tag


def test_the_dockerfile_builds_in_one_step_from_the_repo_root(podman, builder_image, nopy_base, containers,
                                                               tmp_path):
    """`podman build -f docker/Dockerfile .` as the README says: the bundle is frozen inside
    the build (PyInstaller from PyPI), the `waitfor` stage is FROM scratch with only
    /opt/waitfor, and the app stage runs it without Python. Only the FROM images are local
    (no registry here); the host's CA bundle is mounted for the build in case PyPI is
    reached through a TLS-inspecting proxy. Layers are cached while the inputs are unchanged."""
    common = ["build", "--format", "docker", "-q", "--build-arg", f"BUILDER_IMAGE={builder_image}",
              "--build-arg", f"BASE_IMAGE={nopy_base}", "-f", REPO / "docker" / "Dockerfile"]
    if Path("/etc/ssl/certs/ca-certificates.crt").exists():
        common += ["-v", "/etc/ssl/certs:/etc/ssl/certs:ro", "--build-arg", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"]
    t0 = time.monotonic()
    p = podman(*common, "--target", "waitfor", "-t", "localhost/waitfor-e2e-onestep:waitfor", REPO,
               timeout=900, check=False)
    if p.returncode != 0 and "could not install PyInstaller" in p.stdout + p.stderr:
        pytest.skip("the build container cannot reach PyPI for PyInstaller")
    assert p.returncode == 0, p.stderr[-4000:]
    _log(f"built the waitfor stage in {time.monotonic() - t0:.1f}s")
    layers = json.loads(podman("image", "inspect", "localhost/waitfor-e2e-onestep:waitfor",
                               "--format", "{{json .RootFS.Layers}}").stdout)
    assert len(layers) == 1, layers  # FROM scratch + one COPY
    podman(*common, "-t", "localhost/waitfor-e2e-onestep:app", REPO, timeout=900)
    cfg = tmp_path / "waitfor.yaml"
    cfg.write_text("# no dependencies\n")
    cfg.chmod(0o644)
    name = containers("onestep")
    _run(podman, name, "localhost/waitfor-e2e-onestep:app", cfg, "sh", "-c",
         "command -v python3 || echo no-python3; id -u; waitfor --version; exit 5")
    assert podman.wait_exit(name, timeout=60) == 5
    out = podman.logs(name).split("\n")
    assert out[:2] == ["no-python3", "10001"] and out[2].startswith("waitfor "), out


# ---------------------------------------------------------------- podman kube play of docker/k8s

KUBE_IMAGE = "registry.example.com/myapp:1.0"
# The app container runs `node -e ...` (docker/Dockerfile's Node base); the e2e base has no
# Node, so the kube image adds a `node` that just keeps running: waitfor serves the probes.
NODE_STANDIN = '#!/bin/sh\necho "node stand-in: $*"\nexec sleep infinity\n'


def _kube_manifests(tmp_path, image, probe_port):
    """docker/k8s/ as `podman kube play` (4.3) can play it on this machine. The image name is
    substituted; the rest are gaps of podman 4.3 or of a cluster-less host, each one named:
    - no cluster DNS, and bridge traffic to the host is intercepted here: --network host, so
      the config's `postgres`/`redis` become 127.0.0.2 (a late forwarder) and 127.0.0.1, and
      its probe port a free one; `ports:` dropped (podman: PortMappings need a bridge) and
      one replica (two pods would share the host's probe port);
    - a ConfigMap volume with subPath is mounted as a directory onto the file (podman 4.3):
      the ConfigMap's waitfor.yaml becomes a hostPath File at the same mountPath;
    - a Secret kind is not played (podman 4.3): it becomes a `podman secret` holding the same
      Secret, and the volume says `optional: false` (podman 4.3 dereferences a nil `optional`);
    - restartPolicy Always restarts the init container forever after it exits 0 (podman 4.3):
      OnFailure, which Kubernetes would also apply to init containers.
    """
    import base64

    import yaml

    k8s = REPO / "docker" / "k8s"
    text = (k8s / "configmap.yaml").read_text() + "\n---\n" + (k8s / "deployment.yaml").read_text()
    assert KUBE_IMAGE in text
    docs = [d for d in yaml.safe_load_all(text.replace(KUBE_IMAGE, image)) if d]
    kinds = {d["kind"]: d for d in docs}
    cfg_text = kinds["ConfigMap"]["data"]["waitfor.yaml"]
    for old, new in (("@postgres:5432", "@127.0.0.2:5432"), ("redis://redis:", "redis://127.0.0.1:"),
                     ('probe_addr: ":8081"', f'probe_addr: ":{probe_port}"')):
        assert old in cfg_text, old
        cfg_text = cfg_text.replace(old, new)
    cfg = tmp_path / "waitfor.yaml"
    cfg.write_text(cfg_text)
    cfg.chmod(0o644)
    secret = dict(kinds["Secret"])
    secret["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in secret.pop("stringData").items()}
    (tmp_path / "secret.yaml").write_text(yaml.safe_dump(secret))
    dep = kinds["Deployment"]
    dep["spec"]["replicas"] = 1
    pod = dep["spec"]["template"]["spec"]
    pod["restartPolicy"] = "OnFailure"
    for c in pod["containers"]:
        c.pop("ports", None)
    for v in pod["volumes"]:
        if "configMap" in v:
            del v["configMap"]
            v["hostPath"] = {"path": str(cfg), "type": "File"}
        if "secret" in v:
            v["secret"]["optional"] = False
    (tmp_path / "kube.yaml").write_text(yaml.safe_dump_all([dep, kinds["Service"]]))
    return cfg_text, pod


def test_kube_play_of_the_k8s_manifests(podman, bundle_image, e2e_session, tmp_path):
    """docker/k8s/ in `podman kube play`: the init container (`waitfor wait`) blocks until the
    late PostgreSQL accepts, then the app container starts with waitfor as a non-root PID 1,
    and its probe endpoint answers /startupz, /readyz and /livez with 200."""
    if not _accepts(PG):
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 (bash .ci/services.sh starts one)")
    if not _accepts(("127.0.0.1", 6379)):
        pytest.skip("no Redis on 127.0.0.1:6379 (bash .ci/services.sh starts one)")
    if _accepts(("127.0.0.2", 5432)):
        pytest.skip("something already listens on 127.0.0.2:5432")
    # the manifest's role and database (the Secret's password), on the local server
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=0"]
    subprocess.run([*psql, "-c", "CREATE ROLE app LOGIN PASSWORD 'change-me'"], capture_output=True, timeout=30)
    subprocess.run([*psql, "-c", "CREATE DATABASE app OWNER app"], capture_output=True, timeout=30)
    _, work, _ = e2e_session
    ctx = work / "kube-ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "node").write_text(NODE_STANDIN)
    (ctx / "node").chmod(0o755)
    (ctx / "Containerfile").write_text(f"FROM {bundle_image}\nCOPY node /usr/local/bin/node\n")
    image = "localhost/waitfor-e2e-kube:" + bundle_image.rsplit(":", 1)[1]
    if podman("image", "exists", image, check=False).returncode != 0:
        podman("build", "--format", "docker", "-q", "-t", image, ctx, timeout=300)
    probe_port = free_port()
    _, pod = _kube_manifests(tmp_path, image, probe_port)
    sec = pod["volumes"][[("secret" in v) for v in pod["volumes"]].index(True)]["secret"]["secretName"]
    podman("secret", "rm", sec, check=False)
    podman("secret", "create", sec, tmp_path / "secret.yaml")
    kube = tmp_path / "kube.yaml"
    podman("kube", "down", kube, check=False)
    try:
        with Forwarder(PG, delay=4.0, host="127.0.0.2", port=5432):
            t0 = time.monotonic()
            # kube play returns once the init containers have exited and the pod is started
            play = podman("kube", "play", "--network", "host", kube, timeout=120, check=False)
            took = time.monotonic() - t0
            assert play.returncode == 0, play.stderr[-3000:]
            # (podman removes the init container once it has exited 0: its logs are gone)
            assert took >= 4.0, f"the pod started after {took:.1f}s, before PostgreSQL was up"
            deadline = time.monotonic() + 30
            answers = {}
            while time.monotonic() < deadline:
                answers = {}
                for path in ("/startupz", "/readyz", "/livez"):
                    with contextlib.suppress(OSError):
                        with socket.create_connection(("127.0.0.1", probe_port), timeout=2) as s:
                            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                            answers[path] = s.makefile("rb").readline().split()[1:2]
                if answers and all(v == [b"200"] for v in answers.values()) and len(answers) == 3:
                    break
                time.sleep(0.5)
            app_logs = podman.logs("myapp-pod-0-app")
            assert answers == {p: [b"200"] for p in ("/startupz", "/readyz", "/livez")}, (answers, app_logs)
            assert "all dependencies ready" in app_logs and "node stand-in" in app_logs, app_logs
            top = podman("top", "myapp-pod-0-app", "user", "pid", "args").stdout
            pid1 = [line for line in top.splitlines()[1:] if line.split()[1] == "1"]
            assert pid1 and pid1[0].split()[0] == "10001", top
            assert "waitfor run -c /etc/waitfor.yaml -- node" in pid1[0], top
    finally:
        podman("kube", "down", kube, check=False, timeout=120)
        podman("secret", "rm", sec, check=False)


# --------------------------------------------------------------------------- arm64 (issue 18)


@pytest.fixture(scope="session")
def arm64_image(e2e_session):
    """An arm64 image: the arm64 root of packaging/arm64-root.sh without its Python, with
    dist/waitfor-full-arm64 as /opt/waitfor and docker/Dockerfile's ENTRYPOINT, made by
    `podman import --arch arm64` (no registry; a `podman build` of it would run nothing
    that needs the emulator anyway). Cached by the bundle's inputs hash."""
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("e2e: the arm64 image is tried under emulation on amd64 hosts")
    _, _, podman = e2e_session
    p = subprocess.run(["bash", str(REPO / "packaging" / "bundle.sh"), "--arch", "arm64"], capture_output=True,
                       text=True, timeout=2400, cwd=REPO)
    if p.returncode == 3:
        pytest.skip(f"e2e: the arm64 bundles cannot be built here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr[-4000:]
    root = subprocess.run(["bash", str(REPO / "packaging" / "arm64-root.sh")], capture_output=True, text=True,
                          timeout=600, check=True).stdout.split()[-1]
    bundle = REPO / "dist" / "waitfor-full-arm64"
    tag = f"localhost/waitfor-e2e-arm64:{(bundle / '.inputs-hash').read_text().strip()}"
    for old in podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/waitfor-e2e-arm64",
                      check=False).stdout.split():
        if old != tag:
            podman("rmi", old, check=False)
    if podman("image", "exists", tag, check=False).returncode == 0:
        _log(f"arm64 image {tag} is cached")
        return tag
    t0 = time.monotonic()
    # One tar stream: the root (no Python, no build venv, no kernel file systems) and the
    # bundle renamed to opt/waitfor.
    tar = subprocess.Popen(
        ["tar", "-c", "--numeric-owner", "-C", root,
         "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./dev/*", "--exclude=./src",
         "--exclude=./var/cache/waitfor-bundle", "--exclude=./usr/lib/python3*", "--exclude=./usr/bin/python3*",
         "--exclude=./opt/*", ".", "-C", str(REPO / "dist"), "--transform", "s,^waitfor-full-arm64,opt/waitfor,",
         "--exclude=waitfor-full-arm64/.inputs-hash", "waitfor-full-arm64"], stdout=subprocess.PIPE)
    try:
        imp = subprocess.run(["podman", "import", "--arch", "arm64",
                              "--change", "ENV PATH=/opt/waitfor:/usr/sbin:/usr/bin:/sbin:/bin",
                              "--change", 'ENTRYPOINT ["waitfor", "run", "-c", "/etc/waitfor.yaml", "--"]',
                              "--change", "USER 10001:10001", "--change", "WORKDIR /tmp", "-", tag],
                             stdin=tar.stdout, env=podman.env, capture_output=True, text=True, timeout=600)
    finally:
        tar.stdout.close()
        tar.wait(timeout=60)
    assert imp.returncode == 0 and tar.returncode == 0, imp.stderr
    _log(f"imported {tag} in {time.monotonic() - t0:.1f}s")
    return tag


ARM64_APP = r"""
echo "app started on $(uname -m) after the dependency"
trap 'echo "got TERM"; exit 143' TERM
while :; do sleep 0.1; done
"""


def test_arm64_image_pid1_late_dependency_and_stop(podman, arm64_image, containers, tmp_path):
    """`podman run --arch arm64`: waitfor (arm64, under qemu through binfmt_misc) is PID 1,
    waits for a dependency that starts late, runs the app (the image's arm64 sh), and
    `podman stop` ends with 143 through the forwarded TERM. PID 1 is named by
    /proc/1/comm: under emulation /proc/1/cmdline is qemu's command line."""
    with TcpServer(delay=2.0) as dep:
        cfg = tmp_path / "waitfor.yaml"
        cfg.write_text(f"timeout: 120s\ndependencies:\n  - tcp://127.0.0.1:{dep.port}\n")
        cfg.chmod(0o644)
        name = containers("arm64")
        t0 = time.monotonic()
        podman("run", "-d", "--arch", "arm64", "--name", name, "--network", "host", "--read-only",
               "-v", f"{cfg}:/etc/waitfor.yaml:ro", arm64_image, "sh", "-c", ARM64_APP)
        logs = podman.wait_for_log(name, "app started", timeout=120)
        took = time.monotonic() - t0
        assert dep.accepted >= 1
    assert "app started on aarch64 after the dependency" in logs, logs
    assert took >= 2.0, f"the app ran after {took:.1f}s, before the late dependency was up:\n{logs}"
    assert podman("exec", name, "cat", "/proc/1/comm").stdout.strip() == "waitfor"
    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    assert podman("exec", name, "sh", "-c", "command -v python3 || echo no-python3").stdout.strip() == "no-python3"
    t0 = time.monotonic()
    podman("stop", "-t", "20", name, timeout=60)
    took = time.monotonic() - t0
    assert podman.exit_code(name) == 143, podman.logs(name)
    assert "got TERM" in podman.logs(name)
    assert took < 15, f"podman stop took {took:.1f}s: TERM was not forwarded (SIGKILL after the grace)"
