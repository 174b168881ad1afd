"""The runtime watch: once the app runs, watched dependencies are probed every interval,
and a dependency lost for `failure_threshold` rounds in a row stops the app (its stop
signal, then SIGKILL after the stop timeout) and waitfor exits 69.

Black-box: the real CLI in a subprocess, real TCP listeners on 127.0.0.1. `--init` makes
waitfor supervise outside PID 1 (a watch implies it anyway), so these run without a PID
namespace. `waitfor health` is in test_health.py, the probe endpoint in test_probe_endpoint.py.
"""

import subprocess
import time

from helpers.core import APP_TRAPS_TERM, env_with_state, spawn, write_config


def test_watch_stops_the_app_and_exits_69_when_a_dependency_is_lost(tmp_path, listener):
    cfg = write_config(tmp_path, f"""
        timeout: 5s
        stop_timeout: 3s
        watch: {{interval: 200ms, failure_threshold: 3}}
        dependencies:
          - name: db
            url: tcp://127.0.0.1:{listener.port}
    """)
    proc = spawn("run", "-c", cfg, "--", *APP_TRAPS_TERM, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 env=env_with_state(tmp_path))
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
    proc = spawn("run", "-c", cfg, "--stop-timeout", "500ms", "--", *app, stderr=subprocess.PIPE, text=True,
                 env=env_with_state(tmp_path))
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
    proc = spawn("run", "-c", cfg, "--", *app, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 env=env_with_state(tmp_path))
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
    proc = spawn("run", "-c", cfg, "--", *app, stderr=subprocess.PIPE, text=True, env=env_with_state(tmp_path))
    time.sleep(0.6)
    listener.close()
    time.sleep(0.35)  # about two failed rounds, fewer than five
    listener.open()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 7, err  # the app's own code: nothing was stopped
    assert "failed (1/5)" in err
    assert "stopping the app" not in err


def test_watch_interval_flag_turns_the_watch_on(tmp_path, listener):
    proc = spawn("run", f"127.0.0.1:{listener.port}", "--watch-interval", "100ms", "--failure-threshold", "2", "--",
                 *APP_TRAPS_TERM, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 env=env_with_state(tmp_path))
    time.sleep(0.8)
    listener.close()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 69, err
    assert "app-got-TERM" in out
