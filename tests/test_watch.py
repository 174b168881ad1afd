"""Issue 5, parts 1-3: `waitfor health`, the runtime watch and the probe endpoint.

Black-box: the real CLI in a subprocess, real TCP listeners on 127.0.0.1, real HTTP
requests to the probe endpoint. `--init` makes waitfor supervise outside PID 1 (a watch
implies it anyway), so these run without a PID namespace.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

WAITFOR = [sys.executable, "-m", "waitfor"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Listener:
    """A real TCP listener that can be opened and closed on the same port."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.sock = None

    def open(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(128)
        return self

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@pytest.fixture
def listener():
    lst = Listener().open()
    yield lst
    lst.close()


def write_config(tmp_path, text) -> str:
    path = tmp_path / "waitfor.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def env_with_state(tmp_path):
    return {**os.environ, "WAITFOR_STATE_FILE": str(tmp_path / "state.json")}


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_until(predicate, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


APP_TRAPS_TERM = ["sh", "-c", 'trap "echo app-got-TERM; exit 0" TERM; while :; do sleep 0.05; done']


def test_watch_stops_the_app_and_exits_69_when_a_dependency_is_lost(tmp_path, listener):
    cfg = write_config(tmp_path, f"""
        timeout: 5s
        stop_timeout: 3s
        watch: {{interval: 200ms, failure_threshold: 3}}
        dependencies:
          - name: db
            url: tcp://127.0.0.1:{listener.port}
    """)
    proc = subprocess.Popen(WAITFOR + ["run", "-c", cfg, "--"] + APP_TRAPS_TERM,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_with_state(tmp_path))
    time.sleep(1.0)
    assert proc.poll() is None, "the app must keep running while the dependency is up"
    lost_at = time.monotonic()
    listener.close()
    out, err = proc.communicate(timeout=10)
    took = time.monotonic() - lost_at
    assert proc.returncode == 69, err
    assert "app-got-TERM" in out  # stopped with the stop signal, and it handled it
    assert "db failed 3 times in a row" in err and "connection refused" in err
    # three rounds 200 ms apart, then the stop: well under the stop timeout
    assert 0.4 < took < 3.0, took


def test_watch_kills_an_app_that_ignores_the_stop_signal(tmp_path, listener):
    cfg = write_config(tmp_path, f"""
        watch: {{interval: 100ms, failure_threshold: 1}}
        dependencies: [tcp://127.0.0.1:{listener.port}]
    """)
    app = ["sh", "-c", 'trap "" TERM; while :; do sleep 0.05; done']
    proc = subprocess.Popen(WAITFOR + ["run", "-c", cfg, "--stop-timeout", "500ms", "--"] + app,
                            stderr=subprocess.PIPE, text=True, env=env_with_state(tmp_path))
    time.sleep(0.8)
    listener.close()
    start = time.monotonic()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 69, err
    assert "SIGKILL in 0.5s" in err
    assert 0.4 < time.monotonic() - start < 4


def test_watch_stop_signal_is_configurable(tmp_path, listener):
    cfg = write_config(tmp_path, f"""
        stop_signal: INT
        watch: {{interval: 100ms, failure_threshold: 1}}
        dependencies: [tcp://127.0.0.1:{listener.port}]
    """)
    app = ["sh", "-c", 'trap "echo app-got-INT; exit 0" INT; trap "" TERM; while :; do sleep 0.05; done']
    proc = subprocess.Popen(WAITFOR + ["run", "-c", cfg, "--"] + app, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env_with_state(tmp_path))
    time.sleep(0.8)
    listener.close()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 69, err
    assert "app-got-INT" in out


def test_a_failure_below_the_threshold_does_not_stop_the_app(tmp_path, listener):
    cfg = write_config(tmp_path, f"""
        watch: {{interval: 150ms, failure_threshold: 5}}
        dependencies: [tcp://127.0.0.1:{listener.port}]
    """)
    app = ["sh", "-c", "sleep 2.5; exit 7"]
    proc = subprocess.Popen(WAITFOR + ["run", "-c", cfg, "--"] + app, stderr=subprocess.PIPE, text=True,
                            env=env_with_state(tmp_path))
    time.sleep(0.6)
    listener.close()
    time.sleep(0.35)  # about two failed rounds, fewer than five
    listener.open()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 7, err  # the app's own code: nothing was stopped
    assert "failed (1/5)" in err
    assert "stopping the app" not in err


def test_watch_interval_flag_turns_the_watch_on(tmp_path, listener):
    proc = subprocess.Popen(
        WAITFOR + ["run", f"127.0.0.1:{listener.port}", "--watch-interval", "100ms", "--failure-threshold", "2", "--"]
        + APP_TRAPS_TERM, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_with_state(tmp_path))
    time.sleep(0.8)
    listener.close()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 69, err
    assert "app-got-TERM" in out


def test_probe_endpoint_follows_the_phases(tmp_path):
    dep = Listener()
    probe_port = free_port()
    cfg = write_config(tmp_path, f"""
        timeout: 20s
        watch: {{interval: 100ms, failure_threshold: 1000}}
        dependencies:
          - name: db
            url: http://user:s3cretpw@127.0.0.1:{dep.port}/
            status: 2xx
          - tcp://127.0.0.1:{dep.port}
    """)
    base = f"http://127.0.0.1:{probe_port}"
    proc = subprocess.Popen(WAITFOR + ["run", "-c", cfg, "--probe-addr", f"127.0.0.1:{probe_port}", "--"]
                            + APP_TRAPS_TERM, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env_with_state(tmp_path))
    try:
        # While waiting: alive, not ready, not started.
        wait_until(lambda: _reachable(base + "/livez"))
        assert get(base + "/livez")[0] == 200
        code, body = get(base + "/readyz")
        assert code == 503 and body["phase"] == "waiting"
        assert get(base + "/startupz")[0] == 503
        assert get(base + "/nope")[0] == 404
        # The dependency comes up (a real HTTP server on the same port).
        server = _http_server(dep.port)
        wait_until(lambda: get(base + "/readyz")[0] == 200)
        assert get(base + "/startupz")[0] == 200
        # A watched dependency fails: not ready, still alive, app untouched.
        server.shutdown()
        server.server_close()
        code, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(get(base + "/readyz")))
        assert body["failing"] and "s3cretpw" not in json.dumps(body)
        assert get(base + "/livez")[0] == 200
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert "app-got-TERM" in out
    assert proc.returncode == 0
    assert "s3cretpw" not in err


def _reachable(url) -> bool:
    try:
        get(url)
        return True
    except OSError:
        return False


def _http_server(port):
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    http.server.HTTPServer.allow_reuse_address = True
    server = http.server.HTTPServer(("127.0.0.1", port), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ------------------------------------------------------------------------- waitfor health


def test_health_exit_codes_follow_the_health_list(tmp_path, listener):
    closed = free_port()
    cfg = write_config(tmp_path, f"""
        dependencies: [tcp://127.0.0.1:{closed}]
        health:
          - name: app
            url: tcp://127.0.0.1:{listener.port}
    """)
    env = env_with_state(tmp_path)
    r = subprocess.run(WAITFOR + ["health", "-c", cfg], capture_output=True, text=True, env=env, timeout=10)
    assert r.returncode == 0, r.stderr  # health: is checked, not the (closed) dependency
    assert "ok app" in r.stdout
    listener.close()
    r = subprocess.run(WAITFOR + ["health", "-c", cfg], capture_output=True, text=True, env=env, timeout=10)
    assert r.returncode == 1  # unhealthy is 1, never 2 (Docker reserves 2)
    assert "FAIL app" in r.stdout and "connection refused" in r.stdout


def test_health_without_health_list_checks_the_dependencies(tmp_path, listener):
    cfg = write_config(tmp_path, f"dependencies: [tcp://127.0.0.1:{listener.port}]\n")
    r = subprocess.run(WAITFOR + ["health", "-c", cfg], capture_output=True, text=True,
                       env=env_with_state(tmp_path), timeout=10)
    assert r.returncode == 0


def test_health_is_one_bounded_attempt_and_short(tmp_path):
    # 300 closed ports and one blackholed address: one attempt each, bounded, output < 4096 bytes.
    ports = [free_port() for _ in range(300)]
    items = "\n".join(f"  - tcp://127.0.0.1:{p}" for p in ports)
    cfg = write_config(tmp_path, "attempt_timeout: 500ms\ndependencies:\n" + items + "\n")
    start = time.monotonic()
    r = subprocess.run(WAITFOR + ["health", "-c", cfg], capture_output=True, text=True,
                       env=env_with_state(tmp_path), timeout=20)
    assert r.returncode == 1
    assert len((r.stdout + r.stderr).encode()) < 4096
    assert time.monotonic() - start < 5


def test_health_reports_the_supervisors_view_while_it_watches(tmp_path, listener):
    marker = tmp_path / "runs"
    cfg = write_config(tmp_path, f"""
        watch: {{interval: 30s, failure_threshold: 3}}
        dependencies: [tcp://127.0.0.1:{listener.port}]
        health:
          - name: counted
            command: [sh, -c, "echo run >> {marker}"]
    """)
    env = env_with_state(tmp_path)
    proc = subprocess.Popen(WAITFOR + ["run", "-c", cfg, "--"] + APP_TRAPS_TERM, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: (tmp_path / "state.json").exists()
                   and json.loads((tmp_path / "state.json").read_text())["phase"] == "running")
        r = subprocess.run(WAITFOR + ["health", "-c", cfg], capture_output=True, text=True, env=env, timeout=10)
        # healthy, from the supervisor's state: the health process did not run the command itself
        assert r.returncode == 0, r.stdout + r.stderr
        assert not marker.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert not (tmp_path / "state.json").exists()  # removed on exit: a stale view is never trusted
    r = subprocess.run(WAITFOR + ["health", "-c", cfg], capture_output=True, text=True, env=env, timeout=10)
    assert r.returncode == 0 and marker.read_text().count("run") == 1  # now it probes itself


def test_health_says_unhealthy_while_the_supervisor_still_waits(tmp_path):
    closed = free_port()
    cfg = write_config(tmp_path, f"""
        timeout: 20s
        watch: {{interval: 1s}}
        dependencies: [{{name: db, url: "tcp://127.0.0.1:{closed}"}}]
        health: [{{name: always, command: ["true"]}}]
    """)
    env = env_with_state(tmp_path)
    proc = subprocess.Popen(WAITFOR + ["run", "-c", cfg, "--", "true"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: (tmp_path / "state.json").exists())
        r = subprocess.run(WAITFOR + ["health", "-c", cfg], capture_output=True, text=True, env=env, timeout=10)
        assert r.returncode == 1
        assert "waiting" in r.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM
