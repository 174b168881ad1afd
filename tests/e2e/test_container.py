"""waitfor as the ENTRYPOINT of a real container (podman; see conftest.py for the setup).

The image is docker/Dockerfile: ENTRYPOINT ["waitfor", "run", "-c", "/etc/waitfor.yaml", "--"],
HEALTHCHECK CMD ["waitfor", "health"]. Each test mounts its own /etc/waitfor.yaml and the
test app (app.py: an HTTP server that traps SIGTERM and exits 42).
"""

import json
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

APP = ["python3", "/app/app.py"]

# Prints every process in the container as JSON: [[pid, ppid, state, cmdline], ...].
PS = (
    "import json, os\n"
    "rows = []\n"
    "for p in (d for d in os.listdir('/proc') if d.isdigit()):\n"
    "    try:\n"
    "        stat = open(f'/proc/{p}/stat').read()\n"
    "        cmd = open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n"
    "    except OSError:\n"
    "        continue\n"
    "    f = stat[stat.rfind(')') + 2:].split()\n"
    "    rows.append([int(p), int(f[1]), f[0], cmd])\n"
    "print(json.dumps(sorted(rows)))\n"
)


def ps(podman, name):
    """[(pid, ppid, state, cmdline)] of the container's processes (minbase has no ps)."""
    return [tuple(r) for r in json.loads(podman("exec", name, "python3", "-c", PS).stdout)]


def start_app(podman, image, mounts, name, config="# no dependencies\n", *, args=(), opts=()):
    """`podman run -d` the test app behind waitfor; return once it listens."""
    podman("run", "-d", "--name", name, *mounts(config), *opts, image, *APP, *args)
    podman.wait_for_log(name, "app: listening")


def test_waitfor_is_pid1_and_the_app_its_child(podman, image, mounts, containers):
    name = containers("pid1")
    start_app(podman, image, mounts, name)

    # After the wait, PID 1 re-execs into the lean supervisor (python3 -I -S -c ...), which
    # retitles itself: ps and podman top show `waitfor -- COMMAND`, not the one-liner. The
    # rest of the old argument area is NUL padding, as with setproctitle.
    cmdline = podman("exec", name, "cat", "/proc/1/cmdline").stdout.rstrip("\0").split("\0")
    assert cmdline[:4] == ["waitfor", "--", "python3", "/app/app.py"], cmdline
    top = podman("top", name, "pid", "args").stdout
    assert "waitfor -- python3 /app/app.py" in top, top

    info = json.loads(podman("exec", name, "python3", "-c",
                             "import urllib.request as u; print(u.urlopen('http://localhost:8000/info').read().decode())").stdout)
    assert info["pid"] != 1 and info["ppid"] == 1, info
    procs = {pid: (ppid, cmd) for pid, ppid, _, cmd in ps(podman, name)}
    assert "/app/app.py" in procs[info["pid"]][1]


WATCHED = 'probe_addr: ":8081"\nwatch:\n  interval: 1s\n'


@pytest.mark.parametrize("config", ["# no dependencies\n", WATCHED], ids=["lean", "watched"])
def test_stop_delivers_sigterm_to_the_app_and_passes_its_exit_code(podman, image, mounts, containers, config):
    """Both supervisors: the lean re-exec'd one, and the in-process one that a watch or a
    probe endpoint keeps (then PID 1 stays `waitfor run ...`)."""
    name = containers("stop")
    start_app(podman, image, mounts, name, config, args=["--term-code", "42"])
    assert "waitfor" in podman("exec", name, "cat", "/proc/1/cmdline").stdout

    t0 = time.monotonic()
    podman("stop", "-t", "10", name, timeout=30)
    elapsed = time.monotonic() - t0

    assert podman.exit_code(name) == 42
    assert "app: got SIGTERM" in podman.logs(name)
    marker = podman("cp", f"{name}:/tmp/terminated", "-").stdout  # a tar stream of the file
    assert "TERM" in marker
    # TERM reached the app at once: no grace period ran out, no SIGKILL (exit code 137)
    assert elapsed < 5, f"podman stop took {elapsed:.1f}s"


@pytest.mark.parametrize("config", ["# no dependencies\n", WATCHED], ids=["lean", "watched"])
def test_stop_during_the_wait_ends_it_at_once(podman, image, mounts, containers, config):
    """SIGTERM while waiting for a dependency that is not there: exit 128+15 at once,
    without waiting out the timeout or the stop grace period, and the app never starts."""
    name = containers("stopwait")
    podman("run", "-d", "--name", name, "-e", "WAITFOR_TARGETS=tcp://127.0.0.1:9", *mounts(config),
           image, "sh", "-c", "echo APP STARTED")
    podman.wait_for_log(name, "127.0.0.1:9", timeout=15)
    t0 = time.monotonic()
    podman("stop", "-t", "10", name, timeout=30)
    elapsed = time.monotonic() - t0
    assert podman.exit_code(name) == 143
    out = podman.logs(name)
    assert "APP STARTED" not in out and "SIGTERM" in out, out
    assert elapsed < 5, f"podman stop took {elapsed:.1f}s"


@pytest.mark.parametrize("command, expected", [
    (["sh", "-c", "exit 7"], 7),
    (["sh", "-c", "exit 0"], 0),
    (["sh", "-c", "kill -KILL $$"], 137),  # killed by signal 9: 128 + 9
    (["no-such-command"], 127),
    (["/etc/hostname"], 126),  # exists, not executable
])
def test_the_container_exits_with_the_apps_exit_code(podman, image, mounts, containers, command, expected):
    name = containers("code")
    p = podman("run", "--name", name, *mounts(), image, *command, check=False, timeout=60)
    assert p.returncode == expected, p.stderr
    assert podman.exit_code(name) == expected


@pytest.mark.parametrize("config, command, expected, tmpfs", [
    pytest.param("# no dependencies\n", ["sh", "-c", "exit 3"], 3, False, id="run-lean"),
    pytest.param(WATCHED, ["sh", "-c", "exit 3"], 3, True, id="run-watched-tmpfs"),
    pytest.param(WATCHED, ["sh", "-c", "exit 3"], 3, False, id="run-watched"),
    # health with something to check (with nothing, it is unhealthy)
    pytest.param(WATCHED + "dependencies:\n  - file:///etc/hostname\n", ["--entrypoint", "waitfor", "health"],
                 0, False, id="health-watched"),
])
def test_a_read_only_root_filesystem(podman, image, mounts, containers, config, command, expected, tmpfs):
    """Kubernetes' readOnlyRootFilesystem: true, with an emptyDir on /tmp (as
    docker/k8s/deployment.yaml has; podman's --read-only-tmpfs) and without (no writable
    /tmp, /var/tmp or /run). The state file of a watching waitfor is best-effort: without
    a writable /tmp, run and health still work (until 45e153a they exited 70, from
    tempfile.gettempdir())."""
    name = containers("ro")
    opts = ["--read-only", f"--read-only-tmpfs={'true' if tmpfs else 'false'}"]
    if command[0] == "--entrypoint":
        args = [*opts, *mounts(config), *command[:2], image, *command[2:]]
    else:
        args = [*opts, *mounts(config), image, *command]
    p = podman("run", "--name", name, *args, check=False, timeout=60)
    assert p.returncode == expected, p.stderr


def test_orphans_are_reaped_by_pid1(podman, image, mounts, containers):
    """The app leaves a grandchild (sleep 2) that is re-parented to PID 1: when it ends,
    PID 1 must reap it, or it would stay a zombie (state Z) for the container's life."""
    name = containers("reap")
    start_app(podman, image, mounts, name, args=["--orphan"])
    orphans = [r for r in ps(podman, name) if r[3].startswith("sleep")]
    assert [r[1] for r in orphans] == [1], orphans  # re-parented to waitfor
    deadline = time.monotonic() + 10
    while True:
        rows = ps(podman, name)
        left = [r for r in rows if r[0] == orphans[0][0] or r[2] == "Z"]
        if not left:
            break
        assert time.monotonic() < deadline, f"not reaped within 10 s: {rows}"
        time.sleep(0.3)


HEALTH_CONFIG = textwrap.dedent("""\
    health:
      - name: app
        url: http://localhost:8000/healthz
""")


def _healthcheck(podman, name):
    """One `podman healthcheck run` (what the systemd timer would do): (exit code, status)."""
    rc = podman("healthcheck", "run", name, check=False, timeout=30).returncode
    return rc, podman.health(name)


def _last_health_log(podman, name):
    return json.loads(podman.inspect(name, "{{json .State.Health.Log}}"))[-1]


def test_the_image_healthcheck_runs_waitfor_health(podman, image, mounts, containers):
    """HEALTHCHECK CMD ["waitfor", "health"] of docker/Dockerfile survives the build
    (--format docker) and runs the config's health: list, found through WAITFOR_CONFIG."""
    hc = json.loads(podman("image", "inspect", image, "--format", "{{json .Config.Healthcheck}}").stdout)
    assert hc["Test"] == ["CMD", "waitfor", "health"], hc
    env = json.loads(podman("image", "inspect", image, "--format", "{{json .Config.Env}}").stdout)
    assert "WAITFOR_CONFIG=/etc/waitfor.yaml" in env, env

    name = containers("hc")
    start_app(podman, image, mounts, name, HEALTH_CONFIG)
    assert _healthcheck(podman, name) == (0, "healthy")
    assert _last_health_log(podman, name)["Output"].startswith("ok app"), _last_health_log(podman, name)
    podman("exec", name, "touch", "/tmp/unhealthy")
    # The check fails at once; the image's --start-period=30s keeps the status (podman
    # 4.3 ignores every failure in the start period, even after a success).
    assert _healthcheck(podman, name)[0] == 1
    last = _last_health_log(podman, name)
    assert last["ExitCode"] == 1 and "FAIL app" in last["Output"] and "503" in last["Output"], last

    # With neither a health: list nor dependencies there is nothing to check: unhealthy,
    # with the reason (a HEALTHCHECK that lost its config must not pass forever).
    podman("exec", name, "sh", "-c", "echo '{}' > /tmp/empty.yaml")
    r = podman("exec", name, "waitfor", "health", "-c", "/tmp/empty.yaml", check=False)
    assert r.returncode == 1 and "nothing to check" in r.stdout, r


def test_health_status_flips_with_the_apps_health(podman, image, mounts, containers):
    """healthy -> unhealthy -> healthy, as the app's /healthz answers 200, 503, 200. The same
    command as the image's HEALTHCHECK, with no start period and 2 retries."""
    name = containers("flip")
    opts = ["--health-cmd", '["waitfor", "health"]', "--health-start-period", "0s", "--health-retries", "2"]
    start_app(podman, image, mounts, name, HEALTH_CONFIG, opts=opts)
    assert _healthcheck(podman, name) == (0, "healthy")

    podman("exec", name, "touch", "/tmp/unhealthy")
    assert _healthcheck(podman, name) == (1, "healthy")  # one failure: retries=2
    assert _healthcheck(podman, name) == (1, "unhealthy")

    podman("exec", name, "rm", "/tmp/unhealthy")
    assert _healthcheck(podman, name) == (0, "healthy")


def test_a_dependency_that_never_comes_up_ends_the_container_with_124(podman, image, mounts, containers):
    name = containers("timeout")
    t0 = time.monotonic()
    p = podman("run", "--name", name, "-e", "WAITFOR_TIMEOUT=3s", "-e", "WAITFOR_TARGETS=tcp://127.0.0.1:9",
               *mounts(), image, "sh", "-c", "echo APP STARTED", check=False, timeout=60)
    elapsed = time.monotonic() - t0
    assert p.returncode == 124, p.stderr
    assert podman.exit_code(name) == 124
    assert "APP STARTED" not in p.stdout
    assert "127.0.0.1:9" in p.stderr and "timeout 3s" in p.stderr, p.stderr
    assert 3 <= elapsed < 8, f"took {elapsed:.2f}s for a 3s timeout"  # podman run itself: ~0.4 s


def test_the_app_starts_once_its_dependency_comes_up(podman, image, mounts, containers):
    """The config's dependency appears 2 s after the container starts (a listener started
    with podman exec); only then does waitfor start the app."""
    name = containers("wait")
    config = textwrap.dedent("""\
        timeout: 30s
        dependencies:
          - name: late
            url: http://127.0.0.1:9000/
    """)
    podman("run", "-d", "--name", name, *mounts(config), image, *APP)
    started = time.monotonic()
    time.sleep(2)
    assert "app: listening" not in podman.logs(name)
    podman("exec", "-d", name, "python3", "-m", "http.server", "--bind", "127.0.0.1", "9000")
    out = podman.wait_for_log(name, "app: listening", timeout=15)
    assert time.monotonic() - started >= 2
    assert "late: ready after" in out, out


def test_compose_depends_on_service_healthy(podman, image, compose):
    """docker-compose starts `app` only once `db` and `cache` are healthy. The stand-ins
    are the test image too: app.py on ports 5432 and 6379, db listening only after 4 s,
    each with the image's HEALTHCHECK (waitfor health, an http check of itself)."""
    (compose.dir / "app.py").write_text((Path(__file__).parent / "app.py").read_text())
    for svc, port in (("db", 5432), ("cache", 6379)):
        (compose.dir / f"{svc}.yaml").write_text(f"health:\n  - http://localhost:{port}/healthz\n")
    (compose.dir / "app.yaml").write_text(textwrap.dedent("""\
        timeout: 30s
        dependencies:
          - tcp://db:5432
          - tcp://cache:6379
        health:
          - http://localhost:8000/healthz
    """))
    (compose.dir / "docker-compose.yml").write_text(textwrap.dedent("""\
        version: "3.8"
        x-base: &base
          image: ${TEST_IMAGE}
        services:
          db:
            <<: *base
            command: ["python3", "/app/app.py", "--port", "5432", "--delay", "4"]
            volumes: ["./app.py:/app/app.py:ro", "./db.yaml:/etc/waitfor.yaml:ro"]
          cache:
            <<: *base
            command: ["python3", "/app/app.py", "--port", "6379", "--delay", "1"]
            volumes: ["./app.py:/app/app.py:ro", "./cache.yaml:/etc/waitfor.yaml:ro"]
          app:
            <<: *base
            command: ["python3", "/app/app.py", "--port", "8000"]
            volumes: ["./app.py:/app/app.py:ro", "./app.yaml:/etc/waitfor.yaml:ro"]
            depends_on:
              db:
                condition: service_healthy
              cache:
                condition: service_healthy
    """))

    t0 = time.monotonic()
    compose("up", "-d", timeout=120)
    up = time.monotonic() - t0

    ids = {}
    for svc in ("db", "cache", "app"):
        ids[svc] = compose("ps", "-q", svc).stdout.strip()
        assert ids[svc], f"no container for {svc}"
    assert podman.health(ids["db"]) == "healthy"
    assert podman.health(ids["cache"]) == "healthy"

    db_start = float(podman.inspect(ids["db"], "{{.State.StartedAt.Unix}}"))
    app_start = float(podman.inspect(ids["app"], "{{.State.StartedAt.Unix}}"))
    # db listens only 4 s after it starts: app must not have been started before that.
    assert app_start - db_start >= 3, (db_start, app_start, up)

    out = podman.wait_for_log(ids["app"], "app: listening", timeout=30)
    assert "db:5432: ready after" in out and "cache:6379: ready after" in out, out
    db_logs = podman.logs(ids["db"])
    assert "app: listening on 5432" in db_logs, db_logs


def _get(url, timeout=2.0):
    """(status, body) of a GET from the host, or (None, error) when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


def _until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


def test_probe_endpoint_and_watch_as_in_the_k8s_manifests(podman, image, mounts, containers):
    """docker/k8s/deployment.yaml's httpGet probes, from outside the container: /livez,
    /startupz and /readyz on probe_addr ":8081" follow the wait, the app's start and a
    watched dependency; when that dependency stays lost, waitfor stops the app (exit 69)."""
    name = containers("probes")
    config = textwrap.dedent("""\
        timeout: 60s
        probe_addr: ":8081"
        watch:
          interval: 500ms
          failure_threshold: 10
        dependencies:
          - name: late
            url: tcp://127.0.0.1:9000
    """)
    podman("run", "-d", "--name", name, *mounts(config), image, *APP)
    ip = podman.inspect(name, "{{.NetworkSettings.IPAddress}}")
    assert ip, "the container has no IP on the default bridge"
    base = f"http://{ip}:8081"

    # Waiting: alive, not started, not ready.
    _until(lambda: _get(base + "/livez")[0] == 200, 15, "/livez answers 200 during the wait")
    assert _get(base + "/startupz")[0] == 503
    assert _get(base + "/readyz")[0] == 503
    assert "app: listening" not in podman.logs(name)

    # The dependency comes up: the app starts; started and ready.
    podman("exec", "-d", name, "python3", "-m", "http.server", "--bind", "127.0.0.1", "9000")
    podman.wait_for_log(name, "app: listening", timeout=15)
    _until(lambda: _get(base + "/startupz")[0] == 200, 10, "/startupz 200 once the app runs")
    _until(lambda: _get(base + "/readyz")[0] == 200, 10, "/readyz 200 once the app runs")
    assert _get(base + "/livez")[0] == 200
    pid1 = podman("exec", name, "cat", "/proc/1/cmdline").stdout
    assert "waitfor" in pid1, pid1  # with a watch, PID 1 stays the full waitfor process

    # The dependency is lost: not ready, then the watch stops the app and the container.
    listener = [r[0] for r in ps(podman, name) if "http.server" in r[3]]
    assert len(listener) == 1, ps(podman, name)
    podman("exec", name, "sh", "-c", f"kill {listener[0]}")
    t0 = time.monotonic()
    # failure_threshold 10 at 500ms: about 5 s not ready before the app is stopped
    _until(lambda: _get(base + "/readyz")[0] == 503, 10, "/readyz 503 once the dependency is lost")
    assert _get(base + "/livez")[0] == 200
    code = podman.wait_exit(name, timeout=30)
    assert code == 69, podman.logs(name)
    assert time.monotonic() - t0 < 15
    assert "app: got SIGTERM" in podman.logs(name)


def test_waitfor_wait_as_an_init_container(podman, image, mounts, containers):
    """docker/k8s/deployment.yaml's init container, in a podman pod: `waitfor wait` blocks
    the pod's start until the database (another container, listening after 3 s) accepts
    connections; only then does the app container start."""
    db = containers("db")
    podman("run", "-d", "--name", db, *mounts(), image, *APP, "--port", "5432", "--delay", "3")
    db_ip = podman.inspect(db, "{{.NetworkSettings.IPAddress}}")
    config = mounts(f"timeout: 30s\ndependencies:\n  - name: db\n    url: tcp://{db_ip}:5432\n")

    pod = containers("pod")
    init, app = containers("init"), containers("app")
    podman("pod", "create", "--name", pod)
    try:
        # initContainers: [{command: ["waitfor", "wait", ...]}]; "always": kept for inspection
        podman("create", "--pod", pod, "--name", init, "--init-ctr", "always", *config,
               "--entrypoint", '["waitfor", "wait"]', image)
        podman("create", "--pod", pod, "--name", app, *config, image, *APP)
        podman("pod", "start", pod, timeout=60)  # runs the init container to its end first

        assert podman.exit_code(init) == 0
        assert "db: ready after" in podman.logs(init)
        assert podman.inspect(app, "{{.State.Status}}") == "running"
        def ns(name, field):
            return int(podman.inspect(name, "{{.State." + field + ".UnixNano}}"))

        # the database listens 3 s after its start; the init container waited for that,
        # and the app started after the init container ended
        assert ns(init, "FinishedAt") - ns(db, "StartedAt") >= 3e9
        assert ns(app, "StartedAt") > ns(init, "FinishedAt")
        podman.wait_for_log(app, "app: listening", timeout=15)
    finally:
        podman("pod", "rm", "-f", "-t", "0", pod, check=False, timeout=60)
