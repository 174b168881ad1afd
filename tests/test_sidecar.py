"""`waitfor sidecar`: the gate beside an app it does not run.

The probes are called as the kubelet calls them: an HTTP/1.1 GET with the kubelet's
headers (`User-Agent: kube-probe/1.29`, `Accept: */*`, `Connection: close`) and its default
`timeoutSeconds: 1`, success being a status in [200, 400) (k8s.io/kubernetes
pkg/probe/http). They go to a real `waitfor sidecar` process, with a real dependency that
comes up late and a real one that goes away and comes back.

What this cannot show: a kubelet holding the app containers until the sidecar's
startupProbe passes, and removing the pod from the Service's endpoints when its
readinessProbe fails. That needs a Kubernetes 1.29+ node; podman here (4.3.1) has no native
sidecars: `podman kube play` runs an init container with `restartPolicy: Always` as an
ordinary one and waits for its end before starting the app containers (tried on
2026-12-07: the sidecar ran, the app container stayed "Created"). So the kubelet's side
is the documented contract of those probes, and this file checks waitfor's side of it;
the compose example, where a healthcheck does the gating, runs end to end in
tests/e2e/test_sidecar_compose.py.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time

import pytest

from helpers.core import HttpServer, TcpServer, clean_env, free_port, spawn, waitfor
from helpers.pid1 import NS, pid_namespace_unavailable


def kubelet_get(port: int, path: str) -> tuple[int | None, dict]:
    """One httpGet probe, as the kubelet makes it: (status, body), or (None, {}) when the
    probe fails without a status (refused, or no answer within timeoutSeconds: 1)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", path, headers={"User-Agent": "kube-probe/1.29", "Accept": "*/*",
                                           "Connection": "close"})
        r = conn.getresponse()
        body = r.read()
        return r.status, json.loads(body) if body else {}
    except OSError:
        return None, {}
    finally:
        conn.close()


def passes(port: int, path: str) -> bool:
    code = kubelet_get(port, path)[0]
    return code is not None and 200 <= code < 400


def until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def start(tmp_path, *args, env_extra=None):
    env = clean_env(WAITFOR_STATE_FILE=str(tmp_path / "state.json"), **(env_extra or {}))
    return spawn("sidecar", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def stop(proc, sig=signal.SIGTERM):
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=15)
    return proc.returncode, out, err


def test_probes_follow_a_late_dependency_and_one_lost_and_back(tmp_path):
    probe = free_port()
    late = TcpServer(delay=0.0)  # opened by the test, 1.5 s after the sidecar starts
    api_port = free_port()
    cfg = tmp_path / "deps.yaml"
    cfg.write_text(f"""\
timeout: 30s
watch: {{interval: 200ms}}
dependencies:
  - name: db
    url: tcp://127.0.0.1:{late.port}
  - name: api
    url: http://127.0.0.1:{api_port}/healthz
""")
    with _Http(api_port) as api:
        proc = start(tmp_path, "-c", cfg, "--probe-addr", f"127.0.0.1:{probe}")
        try:
            # Waiting for db: alive, not started, not ready; the app containers stay held.
            until(lambda: passes(probe, "/livez"), what="/livez during the wait")
            assert kubelet_get(probe, "/startupz")[0] == 503
            code, body = kubelet_get(probe, "/readyz")
            assert code == 503 and body["phase"] == "waiting" and "db" in body["failing"]
            time.sleep(1.5)
            assert kubelet_get(probe, "/startupz")[0] == 503, "started before db was ready"
            with late:
                # db comes up: started (for ever from now on) and ready.
                until(lambda: passes(probe, "/startupz"), what="/startupz once every dependency was ready")
                until(lambda: passes(probe, "/readyz"), what="/readyz once started")
                assert proc.poll() is None
                # api is lost: not ready (the pod leaves the endpoints), still started and alive.
                api.stop()
                until(lambda: kubelet_get(probe, "/readyz")[0] == 503, what="/readyz 503 when api is lost")
                code, body = kubelet_get(probe, "/readyz")
                assert body["failing"] == ["api"], body
                assert kubelet_get(probe, "/startupz")[0] == 200, "/startupz must stay 200 once passed"
                assert kubelet_get(probe, "/livez")[0] == 200
                time.sleep(1.0)  # several watch rounds: the sidecar does not give up nor exit
                assert proc.poll() is None and kubelet_get(probe, "/readyz")[0] == 503
                # api is back: ready again, without a restart.
                api.start()
                until(lambda: passes(probe, "/readyz"), what="/readyz 200 once api is back")
                assert kubelet_get(probe, "/startupz")[0] == 200
        finally:
            code, out, err = stop(proc)
    assert code == 0, err
    assert out == ""
    assert "watch: api failed" in err and "watch: api is ready again" in err, err
    assert err.count("watch: api failed") == 1, "one warning per outage, not one per round"
    assert "Traceback" not in err


class _Http:
    """An HTTP server on a fixed port that can be stopped and started again."""

    def __init__(self, port):
        self.port, self.server = port, None

    def start(self):
        self.server = HttpServer({"/healthz": (200, b"ok", {})})
        self.server.port = self.port
        self.server.__enter__()

    def stop(self):
        self.server.__exit__(None, None, None)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 0), (signal.SIGINT, 0), (signal.SIGHUP, 129)])
def test_a_stop_signal_once_open_ends_it(tmp_path, sig, code):
    probe = free_port()
    with TcpServer() as dep:
        proc = start(tmp_path, "--probe-addr", f"127.0.0.1:{probe}", f"127.0.0.1:{dep.port}")
        until(lambda: passes(probe, "/startupz"), what="started")
        # signals that stop nothing are not fatal either (no app to pass them to)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        assert proc.poll() is None
        rc, _, err = stop(proc, sig)
    assert rc == code, err
    assert not (tmp_path / "state.json").exists(), "the state file is removed on the way out"


def test_sigterm_during_the_wait_is_exit_0(tmp_path):
    probe = free_port()
    proc = start(tmp_path, "--probe-addr", f"127.0.0.1:{probe}", f"127.0.0.1:{free_port()}")
    until(lambda: passes(probe, "/livez"), what="listening")
    rc, _, err = stop(proc)
    assert rc == 0, err


def test_a_dependency_that_never_comes_is_124(tmp_path):
    r = waitfor("sidecar", "-t", "300ms", f"127.0.0.1:{free_port()}",
                env=clean_env(WAITFOR_STATE_FILE=str(tmp_path / "s.json")))
    assert r.returncode == 124 and "gave up" in r.stderr


@pytest.mark.parametrize("args, words", [
    ((), "nothing to wait for"),
    (("--user", "nobody", "127.0.0.1:1"), "--user applies only to run"),
    (("--failure-threshold", "2", "127.0.0.1:1"), "--failure-threshold applies only to run"),
    (("--template", "a:b", "127.0.0.1:1"), "--template applies only to run"),
    (("--init", "127.0.0.1:1"), "--init applies only to run"),
    (("--watch-interval", "0", "127.0.0.1:1"), "the sidecar always watches"),
    (("127.0.0.1:1", "--", "true"), "sidecar takes no COMMAND"),
    (("--probe-addr", "nope", "127.0.0.1:1"), "--probe-addr"),
])
def test_bad_usage_is_exit_2_in_one_line(args, words):
    r = waitfor("sidecar", *args)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_watch_and_probe_flags_are_taken_and_the_errors_name_the_sidecar():
    r = waitfor("sidecar", "--help")
    assert r.returncode == 0
    assert "--probe-addr" in r.stdout and "--watch-interval" in r.stdout
    assert "--failure-threshold" not in r.stdout and "--user" not in r.stdout
    r = waitfor("wait", "--probe-addr", ":1", "127.0.0.1:1")
    assert r.returncode == 2 and "applies only to run and sidecar" in r.stderr
    assert "sidecar" in waitfor("--help").stdout


def test_health_answers_from_the_sidecars_view(tmp_path):
    """A compose healthcheck (`waitfor health` in the sidecar's container, same config)
    reports what the sidecar sees: unhealthy while it waits, healthy once open, unhealthy
    when the watch finds a dependency gone. No port needed."""
    dep = TcpServer()
    cfg = tmp_path / "deps.yaml"
    cfg.write_text(f"watch: {{interval: 200ms}}\ndependencies:\n  - tcp://127.0.0.1:{dep.port}\n")
    env = clean_env(WAITFOR_STATE_FILE=str(tmp_path / "state.json"), WAITFOR_CONFIG=str(cfg))
    proc = spawn("sidecar", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        until(lambda: (tmp_path / "state.json").exists(), what="state file")
        r = waitfor("health", env=env)
        assert r.returncode == 1 and "waiting for" in r.stdout and "supervisor pid" in r.stdout, r.stdout
        with dep:
            until(lambda: waitfor("health", env=env).returncode == 0, what="healthy once open")
            assert "supervisor" not in waitfor("health", env=env).stdout
        # the listener is gone: the watch sees it, and health says so without probing itself
        until(lambda: waitfor("health", env=env).returncode == 1, what="unhealthy when lost")
    finally:
        rc, _, err = stop(proc)
    assert rc == 0, err


@pytest.mark.pid1
def test_as_pid1_the_orphans_of_command_checks_are_reaped(tmp_path):
    """In its own container the sidecar is PID 1: a command check that leaves a process
    behind hands it to the sidecar, which must reap it (else zombies pile up, one per round)."""
    why = pid_namespace_unavailable()
    if why:
        pytest.skip(why)
    probe = free_port()
    cfg = tmp_path / "deps.yaml"
    cfg.write_text("watch: {interval: 100ms}\ndependencies:\n"
                   "  - name: leaves-one\n    command: [sh, -c, 'sleep 0.05 & exit 0']\n")
    env = clean_env(WAITFOR_STATE_FILE=str(tmp_path / "state.json"), PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    proc = spawn("sidecar", "-c", str(cfg), "--probe-addr", f"127.0.0.1:{probe}", prefix=NS, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True, env=env)
    try:
        until(lambda: passes(probe, "/readyz"), what="ready")
        time.sleep(1.5)  # ~15 rounds, each leaving an orphan
        init = _child_of(proc.pid)
        zombies = [p for p in _children(init) if _state(p) == "Z"]
        assert not zombies, f"zombies under the sidecar (PID 1): {zombies}"
        assert passes(probe, "/readyz"), "the command check still passes: its status was not stolen"
        os.kill(init, signal.SIGTERM)  # as `podman stop` would: to the namespace's PID 1
        _, err = proc.communicate(timeout=15)
        rc = proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=15)
    assert rc == 0, err
    assert "Traceback" not in err


def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rfind(")") + 2:].split()


def _state(pid):
    try:
        return _stat(pid)[0]
    except OSError:
        return "gone"


def _children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat(entry)[1]) == pid:
                    out.append(int(entry))
            except (OSError, IndexError):
                pass
    return out


def _child_of(pid):
    """unshare --fork's child: the namespace's PID 1 (waitfor), seen from here."""
    kids = _children(pid)
    assert len(kids) == 1, kids
    return kids[0]


PIDS = "/sys/fs/cgroup/pids"


def test_the_watch_outlives_rounds_it_cannot_run_under_a_pids_limit(tmp_path):
    """A container's pids limit (a real cgroup v1 pids group here) can leave no thread for a
    watch round. The watch thread used to die of it with a traceback, and /readyz kept
    its last answer for ever; now the round is tried again each interval, and the watch
    sees the lost dependency as soon as threads can be made again."""
    if os.geteuid() != 0 or not os.path.exists(os.path.join(PIDS, "cgroup.procs")):
        pytest.skip("needs root and the cgroup v1 pids controller at /sys/fs/cgroup/pids")
    group = os.path.join(PIDS, f"waitfor-test-{os.getpid()}")
    os.makedirs(group)

    def join():
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def limit(value):
        with open(os.path.join(group, "pids.max"), "w") as f:
            f.write(str(value))

    probe = free_port()
    env = clean_env(WAITFOR_STATE_FILE=str(tmp_path / "state.json"))
    api = _Http(free_port())
    api.start()  # an http check: each round needs a pool thread
    proc = spawn("sidecar", "--watch-interval", "100ms", "--probe-addr", f"127.0.0.1:{probe}",
                 f"http://127.0.0.1:{api.port}/healthz", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 env=env, preexec_fn=join)
    try:
        until(lambda: passes(probe, "/readyz"), what="ready")
        # no new thread from now on: the fewest tasks seen (a round's threads come and go)
        seen = []
        for _ in range(30):
            with open(os.path.join(group, "pids.current")) as f:
                seen.append(int(f.read()))
            time.sleep(0.01)
        limit(min(seen))
        time.sleep(0.5)  # rounds that cannot run
        api.stop()
        time.sleep(0.5)
        assert proc.poll() is None
        limit("max")
        until(lambda: kubelet_get(probe, "/readyz")[0] == 503, what="/readyz 503 once rounds run again")
        api.start()
        until(lambda: passes(probe, "/readyz"), what="/readyz 200 once api is back")
    finally:
        limit("max")
        rc, _, err = stop(proc)
        api.stop()
        os.rmdir(group)
    assert rc == 0, err
    assert "Traceback" not in err, err
    # The limit bit: either a round could not start at all (one warning, then -v only until
    # rounds run again), or its scheduler ran and the check failed for want of a thread.
    assert "watch: cannot run a round" in err or "can't start new thread" in err, err
    assert err.count("watch: cannot run a round") <= 1, err
    assert ("watch: cannot run a round" in err) == ("watch: rounds run again" in err), err


def test_the_watch_gets_the_probes_built_before_the_wait(tmp_path, monkeypatch):
    """Issue 19: as `run` does, the sidecar hands its watch the probes it built before the
    wait (the dependencies' and the `health:` checks'), so that no round of the watch builds
    a driver's probe again. (In-process: the Watched is replaced, to see what it is given;
    the wait itself is the real one, on real files.)"""
    from types import SimpleNamespace

    from waitfor import config, exitcodes
    from waitfor.commands.sidecar import run_sidecar
    from waitfor.output import Log
    from waitfor.supervise import inprocess

    for name in ("dep", "check"):
        (tmp_path / name).write_text("x")
    conf = tmp_path / "c.yaml"
    conf.write_text(f"dependencies:\n  - {{name: dep, url: 'file://{tmp_path}/dep'}}\n"
                    f"health:\n  - {{name: check, url: 'file://{tmp_path}/check'}}\n")
    cfg = config.build(SimpleNamespace(mode="sidecar", command=None, targets=[], config=str(conf)), {})
    given = {}

    class Recording:
        def __init__(self, cfg, log, probes=None):
            given.update(probes or {})

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def observe(self, o):
            pass

        def gate(self):
            return exitcodes.OK

    monkeypatch.setattr(inprocess, "Watched", Recording)
    assert run_sidecar(cfg, Log(verbosity=-2)) == exitcodes.OK
    assert sorted(given) == ["check", "dep"], given
