"""`waitfor health` (a Docker HEALTHCHECK or a k8s probe command) and the supervisor's state
file it reads.

health checks the `health:` list (else the dependencies) in one bounded attempt and says
healthy (0) or unhealthy (1, never 2); while a supervisor of the same config runs, it answers
from the supervisor's state file instead of probing, and only for the same checks. Whatever
sits at the state file's path is treated as hostile (FIFOs, links to devices, huge or forged
files, files others could write), and neither the file nor /readyz shows a secret or a
command's arguments. Black-box where it matters (the real CLI, real listeners on 127.0.0.1,
a real supervisor); the validation of random JSON runs in-process with hypothesis, as the
CLI would only add process start-up to each example.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import time

import pytest

from helpers.core import (
    APP_TRAPS_TERM,
    REPO,
    clean_env,
    env_with_state,
    free_port,
    get,
    spawn,
    wait_until,
    waitfor,
    write_config,
)
from waitfor import args as arguments
from waitfor import config
from waitfor.supervise import state as st


def _limit_memory():
    # A test of the old code must not take the shared machine down with it (/dev/zero read whole).
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def health(*argv, env, timeout=20):
    return waitfor("health", *argv, env=env, timeout=timeout, preexec_fn=_limit_memory)


def env_for(tmp_path, **extra):
    """clean_env() with the state file in tmp_path, plus `extra`."""
    return clean_env(WAITFOR_STATE_FILE=str(tmp_path / "state.json"), **extra)


def cfg_of(path, env):
    return config.build(arguments.parse(["health", "-c", str(path)]), env)


def forged_state(cfg, path, **fields):
    """A state file as a live supervisor of `cfg` would write it, with `fields` changed."""
    status = st.Status.for_config(cfg, str(path))
    status.phase = st.RUNNING
    snap = status.snapshot()
    snap.update({"pid": os.getpid(), "watch_interval": 30.0, "updated": time.time(), **fields})
    return snap


def write_raw(path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o600)


@pytest.fixture
def supervisor(tmp_path, listener):
    """A supervisor watching a ready dependency, with the default state file of its env."""
    cfg = write_config(tmp_path, f"""
        watch: {{interval: 30s}}
        dependencies: [{{name: redis, url: "tcp://127.0.0.1:{listener.port}"}}]
    """)
    env = env_for(tmp_path)
    proc = spawn("run", "-c", cfg, "--", *APP_TRAPS_TERM, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 env=env)
    try:
        wait_until(lambda: (tmp_path / "state.json").exists()
                   and json.loads((tmp_path / "state.json").read_text())["phase"] == "running")
        yield cfg, env
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


# ------------------------------------------------------------- what is checked, exit codes


def test_health_exit_codes_follow_the_health_list(tmp_path, listener):
    closed = free_port()
    cfg = write_config(tmp_path, f"""
        dependencies: [tcp://127.0.0.1:{closed}]
        health:
          - name: app
            url: tcp://127.0.0.1:{listener.port}
    """)
    env = env_with_state(tmp_path)
    r = waitfor("health", "-c", cfg, env=env, timeout=10)
    assert r.returncode == 0, r.stderr  # health: is checked, not the (closed) dependency
    assert "ok app" in r.stdout
    listener.close()
    r = waitfor("health", "-c", cfg, env=env, timeout=10)
    assert r.returncode == 1  # unhealthy is 1, never 2 (Docker reserves 2)
    assert "FAIL app" in r.stdout and "connection refused" in r.stdout


def test_health_without_health_list_checks_the_dependencies(tmp_path, listener):
    cfg = write_config(tmp_path, f"dependencies: [tcp://127.0.0.1:{listener.port}]\n")
    r = waitfor("health", "-c", cfg, env=env_with_state(tmp_path), timeout=10)
    assert r.returncode == 0


def test_health_is_one_bounded_attempt_and_short(tmp_path):
    # 300 closed ports and one blackholed address: one attempt each, bounded, output < 4096 bytes.
    ports = [free_port() for _ in range(300)]
    items = "\n".join(f"  - tcp://127.0.0.1:{p}" for p in ports)
    cfg = write_config(tmp_path, "attempt_timeout: 500ms\ndependencies:\n" + items + "\n")
    start = time.monotonic()
    r = waitfor("health", "-c", cfg, env=env_with_state(tmp_path), timeout=20)
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
    proc = spawn("run", "-c", cfg, "--", *APP_TRAPS_TERM, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 env=env)
    try:
        wait_until(lambda: (tmp_path / "state.json").exists()
                   and json.loads((tmp_path / "state.json").read_text())["phase"] == "running")
        r = waitfor("health", "-c", cfg, env=env, timeout=10)
        # healthy, from the supervisor's state: the health process did not run the command itself
        assert r.returncode == 0, r.stdout + r.stderr
        assert not marker.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert not (tmp_path / "state.json").exists()  # removed on exit: a stale view is never trusted
    r = waitfor("health", "-c", cfg, env=env, timeout=10)
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
    proc = spawn("run", "-c", cfg, "--", "true", stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: (tmp_path / "state.json").exists())
        r = waitfor("health", "-c", cfg, env=env, timeout=10)
        assert r.returncode == 1
        assert "waiting" in r.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM


# ------------------------------------------- the supervisor's state answers the same checks only


def test_the_supervisors_view_answers_its_own_config(supervisor):
    cfg, env = supervisor
    r = health("-c", cfg, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok redis" in r.stdout


def test_explicit_targets_are_always_probed(supervisor, tmp_path):
    _, env = supervisor
    closed = free_port()
    r = health(f"127.0.0.1:{closed}", env=env)
    assert r.returncode == 1, r.stdout
    assert "redis" not in r.stdout and "refused" in r.stdout
    # even next to the supervisor's own config: the command line asks about that target
    r = health("-c", supervisor[0], f"127.0.0.1:{closed}", env=env)
    assert "redis" not in r.stdout or "refused" in r.stdout


def test_another_config_is_probed_not_answered_from_the_state(supervisor, tmp_path):
    _, env = supervisor
    marker = tmp_path / "ran"
    other = tmp_path / "other.yaml"
    other.write_text(f'dependencies: [{{name: other, command: [sh, -c, "echo x >> {marker}; exit 3"]}}]\n')
    r = health("-c", str(other), env=env)
    assert r.returncode == 1, r.stdout
    assert marker.exists() and "FAIL other" in r.stdout and "redis" not in r.stdout


def test_other_waitfor_targets_are_another_identity(supervisor, tmp_path):
    cfg, env = supervisor
    closed = free_port()
    r = health("-c", cfg, env={**env, "WAITFOR_TARGETS": f"127.0.0.1:{closed}"})
    assert r.returncode == 1, r.stdout
    assert "refused" in r.stdout


def test_the_identity_covers_options_and_hides_secrets(tmp_path):
    env = env_for(tmp_path)
    a = write_config(tmp_path, 'dependencies: [{url: "http://u:hunter22@127.0.0.1:1/", status: 200}]\n')
    ca = cfg_of(a, env)
    b = tmp_path / "b.yaml"
    b.write_text('dependencies: [{url: "http://u:hunter22@127.0.0.1:1/", status: 204}]\n')
    c = tmp_path / "c.yaml"
    c.write_text('dependencies: [{url: "http://u:other@127.0.0.1:1/", status: 200}]\n')
    salt = st.new_salt()
    assert st.identity(ca, salt) == st.identity(cfg_of(a, env), salt)
    assert st.identity(ca, salt) != st.identity(cfg_of(b, env), salt)
    assert st.identity(ca, salt) != st.identity(cfg_of(c, env), salt)
    assert st.identity(ca, salt) != st.identity(ca, st.new_salt())  # keyed: no fingerprint across files
    text = json.dumps(st.Status.for_config(ca, None).snapshot())
    assert "hunter22" not in text


# ------------------------------------------------------------------ hostile state files


@pytest.fixture
def ready_cfg(tmp_path, listener):
    """A config whose one dependency is ready, and its env: probing it directly says 0."""
    path = write_config(tmp_path, f"dependencies: [tcp://127.0.0.1:{listener.port}]\n")
    return path, env_for(tmp_path)


def test_a_fifo_at_the_path_does_not_hang(tmp_path, ready_cfg):
    os.mkfifo(tmp_path / "state.json", 0o600)
    start = time.monotonic()
    r = health("-c", ready_cfg[0], env=ready_cfg[1])
    assert r.returncode == 0, r.stdout + r.stderr
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_a_link_to_an_endless_device_is_not_followed(tmp_path, ready_cfg, target):
    os.symlink(target, tmp_path / "state.json")
    r = health("-c", ready_cfg[0], env=ready_cfg[1])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "error" not in r.stderr


def test_a_huge_file_is_not_read(tmp_path, listener):
    path = write_config(tmp_path, f"dependencies: [tcp://127.0.0.1:{listener.port}]\n")
    env = env_for(tmp_path)
    listener.close()  # probing says 1; the forged file says 0
    snap = forged_state(cfg_of(path, env), tmp_path / "state.json")
    write_raw(tmp_path / "state.json", json.dumps(snap) + " " * (st.MAX_STATE_BYTES + 10))
    r = health("-c", path, env=env)
    assert r.returncode == 1, r.stdout


def test_the_forged_file_is_trusted_when_small_and_valid(tmp_path, listener):
    # The control for the tests around it: the same forged file, within bounds, answers.
    path = write_config(tmp_path, f"dependencies: [tcp://127.0.0.1:{listener.port}]\n")
    env = env_for(tmp_path)
    listener.close()
    snap = forged_state(cfg_of(path, env), tmp_path / "state.json")
    write_raw(tmp_path / "state.json", json.dumps(snap))
    r = health("-c", path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("raw", [
    '"pid": 1e400', '"pid": -5', '"pid": 99999999999', '"pid": true', '"pid": 1.5',
    '"updated": NaN', '"updated": Infinity', '"updated": 1e400', '"updated": "now"',
    '"phase": "dancing"', '"phase": null', '"watch_interval": NaN', '"checks": {}',
    '"checks": [{"name": 1}]', '"failing": [null]', '"ready": "yes"', '"identity": 5',
    '"identity": "\\u00e9\\ud800"', '"salt": "xyz"', '"salt": ""', '"updated": 1' + "0" * 400,
    '"watch_interval": 1' + "0" * 400, '"pid": 1' + "0" * 400,
])
def test_a_bad_field_means_probe_directly(tmp_path, listener, raw):
    path = write_config(tmp_path, f"dependencies: [tcp://127.0.0.1:{listener.port}]\n")
    env = env_for(tmp_path)
    listener.close()  # probing says 1; the file (if wrongly trusted) says 0
    snap = forged_state(cfg_of(path, env), tmp_path / "state.json")
    key = raw.split('"')[1]
    text = json.dumps(snap).replace(f'"{key}": {json.dumps(snap[key])}', raw, 1)
    assert raw in text
    write_raw(tmp_path / "state.json", text)
    r = health("-c", path, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "error" not in r.stderr, r.stderr  # no exit 70, no traceback


def test_a_stale_waiting_file_with_a_reused_pid_is_ignored(tmp_path, ready_cfg):
    # The pid is alive (this test's), the phase says "waiting": were it trusted, health
    # would fail forever after the supervisor died and its pid was reused.
    snap = forged_state(cfg_of(*ready_cfg), tmp_path / "state.json", phase=st.WAITING,
                        updated=time.time() - 60, failing=["db"])
    write_raw(tmp_path / "state.json", json.dumps(snap))
    r = health("-c", ready_cfg[0], env=ready_cfg[1])
    assert r.returncode == 0, r.stdout
    # and a fresh one still says "waiting": the heartbeat keeps a real one fresh
    snap["updated"] = time.time()
    write_raw(tmp_path / "state.json", json.dumps(snap))
    r = health("-c", ready_cfg[0], env=ready_cfg[1])
    assert r.returncode == 1 and "waiting for db" in r.stdout


def test_files_others_could_write_are_ignored(tmp_path, listener):
    path = write_config(tmp_path, f"dependencies: [tcp://127.0.0.1:{listener.port}]\n")
    env = env_for(tmp_path)
    listener.close()
    snap = forged_state(cfg_of(path, env), tmp_path / "state.json")
    write_raw(tmp_path / "state.json", json.dumps(snap))
    os.chmod(tmp_path / "state.json", 0o666)
    assert health("-c", path, env=env).returncode == 1


def test_a_waiting_supervisor_keeps_its_file_fresh(tmp_path):
    closed = free_port()
    cfg = write_config(tmp_path, f"""
        timeout: 30s
        dependencies: [{{name: db, url: "tcp://127.0.0.1:{closed}"}}]
    """)
    env = env_for(tmp_path)
    proc = spawn("run", "--watch-interval", "1s", "-c", cfg, "--", "true", stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: (tmp_path / "state.json").exists())
        first = json.loads((tmp_path / "state.json").read_text())["updated"]
        wait_until(lambda: json.loads((tmp_path / "state.json").read_text())["updated"] > first,
                   timeout=st.HEARTBEAT * 3)
        r = health("-c", cfg, env=env)
        assert r.returncode == 1 and "waiting" in r.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


# ------------------------------------------------------- hostile state files: random JSON, in-process

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

JSON = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.integers(min_value=10**300, max_value=10**400) | hs.floats()
    | hs.text(max_size=20),
    lambda inner: hs.lists(inner, max_size=5) | hs.dictionaries(hs.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
KEYS = ("pid", "phase", "live", "started", "ready", "failing", "checks", "updated", "watch_interval",
        "identity", "salt")


def _check_read(path, text: str) -> None:
    write_raw(path, text)
    got = st.read_live_state(str(path), max_age=float("inf"))
    if got is not None:  # whatever is accepted has the types and ranges the reader relies on
        assert 1 <= got["pid"] <= st.MAX_PID and math.isfinite(got["updated"])
        assert got["phase"] in st.PHASES and isinstance(got["checks"], list)


@given(doc=JSON)
def test_random_json_never_raises(tmp_path, doc):
    _check_read(tmp_path / "state.json", json.dumps(doc))


@given(key=hs.sampled_from(KEYS), value=JSON)
def test_a_random_value_in_a_valid_file_never_raises(tmp_path, monkeypatch, key, value):
    from waitfor.commands.check import supervisor_view

    cfg = config.build(arguments.parse(["health", "127.0.0.1:1"]), {})
    snap = forged_state(cfg, tmp_path / "state.json")
    snap[key] = value
    _check_read(tmp_path / "state.json", json.dumps(snap))
    monkeypatch.setenv("WAITFOR_STATE_FILE", str(tmp_path / "state.json"))
    view = supervisor_view(cfg)  # what health makes of it: a view or None, never an exception
    assert view is None or (isinstance(view[0], bool) and all(isinstance(x, str) for x in view[1]))


@given(data=hs.binary(max_size=200))
def test_random_bytes_never_raise(tmp_path, data):
    (tmp_path / "state.json").write_bytes(data)
    os.chmod(tmp_path / "state.json", 0o600)
    assert st.read_live_state(str(tmp_path / "state.json"), max_age=float("inf")) is None


# ----------------------------------- no secret or argument in /readyz and the state file


def test_readyz_and_the_state_file_show_no_arguments_or_secrets(tmp_path, listener):
    probe_port = free_port()
    cfg = write_config(tmp_path, f"""
        watch: {{interval: 200ms}}
        dependencies:
          - command: [sh, -c, "exit 0", x, "-pLEAK1", "host=db password=LEAK2"]
          - url: "http://127.0.0.1:{listener.port}/x?pass%77ord=LEAK3&api-key=LEAK4&sslpassword=LEAK5"
          - url: "tcp://u:LEAK6@127.0.0.1:{listener.port}"
          - {{name: "mine", url: "tcp://127.0.0.1:{listener.port}"}}
    """)
    env = env_for(tmp_path)
    listener.close()  # everything but the command fails: every name is in "failing"
    proc = spawn("run", "-c", cfg, "-t", "20s", "--probe-addr", f"127.0.0.1:{probe_port}", "--", "true",
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: _failing(f"http://127.0.0.1:{probe_port}/readyz"))
        time.sleep(0.3)
        body = json.dumps(get(f"http://127.0.0.1:{probe_port}/readyz")[1])
        state = (tmp_path / "state.json").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    for text in (body, state):
        assert "LEAK" not in text and "password" not in text and "/x" not in text, text
    names = json.loads(state)["failing"]
    assert "mine" in names and f"http 127.0.0.1:{listener.port}" in names
    assert f"tcp 127.0.0.1:{listener.port}" in names


def _failing(url):
    try:
        return len(get(url)[1]["failing"]) >= 3
    except OSError:
        return False


# ------------------------------------------------------------------ health with nothing to check


def test_health_with_nothing_to_check_answers_for_the_running_supervisor(supervisor, tmp_path):
    """`waitfor health` with no -c, no WAITFOR_CONFIG and no targets asks about the
    supervisor's own config: its state file answers (the supervisor was started with -c)."""
    _, env = supervisor
    r = health(env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok redis" in r.stdout
    os.unlink(tmp_path / "state.json")  # no supervisor view: nothing to check, unhealthy
    r = health(env=env)
    assert r.returncode == 1 and "nothing to check" in r.stdout, r.stdout


# ------------------------------------------------------------------ the state file on a full disk
# A write that fails leaves no `state.json.<pid>.tmp` behind. A real full device: a 4 KiB
# tmpfs, filled, mounted in a mount namespace of the test's own (`unshare -m`, root only),
# never the machine's /tmp.

# Mount, fill, run waitfor (its state file on the full tmpfs), then list what is left there:
# the tmpfs is visible inside the namespace only.
SCRIPT = """
mount -t tmpfs -o size=4k tmpfs "$0" || exit 99
head -c 8192 /dev/zero > "$0/fill" 2>/dev/null
"$@"
echo "code $?"
ls -A "$0"
"""


def test_a_full_disk_leaves_no_temporary_state_file(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = waitfor("--init", "--watch-interval", "100ms", "file:///", "--", "sleep", "0.5",
                prefix=["unshare", "-m", "sh", "-c", SCRIPT, str(tmp_path)], timeout=30,
                env=clean_env(PYTHONPATH=str(REPO), WAITFOR_STATE_FILE=f"{tmp_path}/state.json"))
    if r.returncode == 99 or "unshare" in r.stderr:
        pytest.skip(f"no mount namespace with a tmpfs here: {r.stderr.strip()}")
    lines = r.stdout.split()
    assert lines[:2] == ["code", "0"], r.stdout + r.stderr
    assert lines[2:] == ["fill"], f"left on the full disk: {lines[2:]}"
