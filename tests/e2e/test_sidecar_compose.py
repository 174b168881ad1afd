"""The sidecar gate's compose example (docker/compose.sidecar.yaml), end to end: docker-compose
against podman's API socket, health checks run by the loop of conftest.py (no systemd).

The example file is used verbatim, with the project directory set to the test's folder,
where its `./sidecar.yaml` and `./postgres_password.txt` are the test's own; a second
compose file replaces only what no registry can give here:
- `waitfor`: docker/Dockerfile.sidecar verbatim, built from the full bundle of
  packaging/bundle.sh (as docker/Dockerfile's `waitfor` stage holds it) on a Debian minbase
  without Python instead of distroless/base (no registry to pull it from);
- `db` and `cache`: the e2e test image running tests/e2e/app.py (an HTTP server that listens
  late) instead of postgres:16 and redis:7; so the test's sidecar.yaml waits for
  tcp://db:5432 and http://cache:6379/healthz (the example's postgres:// and redis://
  need the real servers);
- `app`: the Python-less minbase instead of alpine:3.20 (same command: sh, echo, sleep);
- the gate's healthcheck start period: 8 s instead of 2 m (podman 4.3 ignores failures for
  the whole start period, even after the container was healthy).

What it shows: compose creates `app` only once the gate is healthy (after the late db);
the gate's image has no Python and runs waitfor as PID 1; its probe endpoint and its
healthcheck follow a dependency that is lost and comes back; `compose stop` ends it with 0.
"""

import hashlib
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _log(msg):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@pytest.fixture(scope="session")
def sidecar_image(e2e_session, nopy_base):
    """docker/Dockerfile.sidecar on the Python-less base, WAITFOR_IMAGE being a FROM scratch
    image of dist/waitfor-full (what docker/Dockerfile's `waitfor` stage is)."""
    _, work, podman = e2e_session
    p = subprocess.run(["bash", str(REPO / "packaging" / "bundle.sh")], capture_output=True, text=True,
                       timeout=1200, cwd=REPO)
    if p.returncode == 3:
        pytest.skip(f"e2e: PyInstaller cannot be installed here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr[-4000:]
    dist = REPO / "dist"
    dockerfile = (REPO / "docker" / "Dockerfile.sidecar").read_text()
    key = hashlib.sha256(((dist / "waitfor-full" / ".inputs-hash").read_text() + dockerfile).encode()).hexdigest()[:16]
    bundle_tag, tag = f"localhost/waitfor-e2e-waitfor:{key}", f"localhost/waitfor-e2e-sidecar:{key}"
    for repo, keep in (("localhost/waitfor-e2e-sidecar", tag), ("localhost/waitfor-e2e-waitfor", bundle_tag)):
        for old in podman("images", "--format", "{{.Repository}}:{{.Tag}}", repo, check=False).stdout.split():
            if old != keep:
                podman("rmi", old, check=False)
    if podman("image", "exists", tag, check=False).returncode == 0:
        _log(f"sidecar image {tag} is cached")
        return tag
    t0 = time.monotonic()
    if podman("image", "exists", bundle_tag, check=False).returncode != 0:
        ctx = work / "waitfor-stage"
        ctx.mkdir(exist_ok=True)
        (ctx / "Containerfile").write_text("FROM scratch\nCOPY waitfor-full /opt/waitfor\n")
        podman("build", "--format", "docker", "-q", "-f", ctx / "Containerfile", "-t", bundle_tag, dist, timeout=300)
    empty = work / "sidecar-ctx"
    empty.mkdir(exist_ok=True)
    podman("build", "--format", "docker", "-q", "--build-arg", f"WAITFOR_IMAGE={bundle_tag}",
           "--build-arg", f"BASE_IMAGE={nopy_base}", "-f", REPO / "docker" / "Dockerfile.sidecar", "-t", tag, empty,
           timeout=300)
    _log(f"built {tag} in {time.monotonic() - t0:.1f}s")
    return tag


def _get(url, timeout=1.0):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def _until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def test_the_compose_sidecar_example_gates_the_app(podman, image, nopy_base, sidecar_image, compose):
    d = compose.dir
    (d / "app.py").write_text((HERE / "app.py").read_text())
    (d / "postgres_password.txt").write_text("change-me")
    (d / "sidecar.yaml").write_text(textwrap.dedent("""\
        timeout: 2m
        watch:
          interval: 500ms
        dependencies:
          - name: db
            url: tcp://db:5432
          - name: cache
            url: http://cache:6379/healthz
    """))
    (d / "stand-ins.yaml").write_text(textwrap.dedent(f"""\
        version: "3.8"
        services:
          waitfor:
            image: {sidecar_image}
            # podman 4.3 ignores failed checks for the whole start period, also after a
            # healthy one (Docker counts them from the first healthy one on): shorter here,
            # so that the loss below shows within the test; still longer than the wait.
            healthcheck:
              start_period: 8s
          app:
            image: {nopy_base}
          db:
            image: {image}
            command: ["python3", "/app/app.py", "--port", "5432", "--delay", "4"]
            volumes: ["./app.py:/app/app.py:ro"]
          cache:
            image: {image}
            command: ["python3", "/app/app.py", "--port", "6379"]
            volumes: ["./app.py:/app/app.py:ro"]
    """))
    files = ["-f", str(REPO / "docker" / "compose.sidecar.yaml"), "-f", "stand-ins.yaml", "--project-directory", str(d)]

    t0 = time.monotonic()
    compose(*files, "up", "-d", timeout=180)
    up = time.monotonic() - t0
    ids = {svc: compose(*files, "ps", "-q", svc).stdout.strip() for svc in ("waitfor", "app", "db", "cache")}
    assert all(ids.values()), ids
    gate = ids["waitfor"]
    assert podman.health(gate) == "healthy"

    # The app was created only once the gate was healthy, i.e. after db listened (4 s).
    db_start = float(podman.inspect(ids["db"], "{{.State.StartedAt.Unix}}"))
    app_start = float(podman.inspect(ids["app"], "{{.State.StartedAt.Unix}}"))
    assert app_start - db_start >= 3, (db_start, app_start, up)
    podman.wait_for_log(ids["app"], "app: started", timeout=30)
    logs = podman.logs(gate)
    assert "db: ready after" in logs and "serving as a sidecar" in logs, logs

    # The gate's image: no Python, the bundle's waitfor as PID 1, not root.
    cmdline = podman("exec", gate, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert cmdline[:2] == ["waitfor", "sidecar"], cmdline
    assert podman("exec", gate, "sh", "-c", "command -v python3 || echo none").stdout.strip() == "none"
    assert podman("exec", gate, "id", "-u").stdout.strip() == "65532"

    # Its probe endpoint, from the host, as a kubelet would call it.
    ip = podman.inspect(gate, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
    base = f"http://{ip}:9090"
    # /readyz follows every watch round, and a round may fail once just after `app` joined
    # the network: podman 4.3's DNS server (aardvark-dns) then reloads, and resolving `db`
    # and `cache` timed out in 2 of 7 runs here. A kubelet's readinessProbe retries
    # (failureThreshold 2 in docker/k8s/sidecar.yaml); so does this check, for one round.
    _until(lambda: _get(base + "/readyz") == 200, 10, "/readyz 200 once a watch round passes")
    assert (_get(base + "/startupz"), _get(base + "/readyz"), _get(base + "/livez")) == (200, 200, 200), \
        podman.logs(gate)

    # cache turns unhealthy: the gate's /readyz and its healthcheck follow; the app stays.
    podman("exec", ids["cache"], "touch", "/tmp/unhealthy")
    _until(lambda: _get(base + "/readyz") == 503, 15, "/readyz 503 while cache fails")
    assert _get(base + "/startupz") == 200 and _get(base + "/livez") == 200
    _until(lambda: podman.health(gate) == "unhealthy", 30, "the gate's healthcheck unhealthy")
    # ...and back: ready and healthy again, without a restart.
    podman("exec", ids["cache"], "rm", "/tmp/unhealthy")
    _until(lambda: _get(base + "/readyz") == 200, 15, "/readyz 200 once cache is back")
    _until(lambda: podman.health(gate) == "healthy", 20, "healthy again")
    assert podman.inspect(gate, "{{.RestartCount}}") in ("0", "")
    assert podman.inspect(ids["app"], "{{.State.Status}}") == "running"

    # compose stop: SIGTERM, exit 0.
    compose(*files, "stop", "-t", "10", "waitfor", timeout=60)
    assert podman.exit_code(gate) == 0, podman.logs(gate)
    assert "received SIGTERM; stopping" in podman.logs(gate)
