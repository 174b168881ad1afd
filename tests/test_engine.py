"""The waiting engine: backoff composition (tenacity RetryCallState), polling rate on a
real closed port, parallelism, a ready dependency is not probed again, after: ordering,
per-dependency timeout, fail fast on a Broken probe, cancel."""

import os
import random
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from helpers.core import HttpServer, TcpServer, free_port, spawn, waitfor
from waitfor import config
from waitfor.probes.base import NotReady, Refused
from waitfor.wait import backoff
from waitfor.wait.engine import FAILED, POOL_SIZE, READY, WAITING, Engine


def cfg_for(tmp_path=None, yaml_text=None, targets=(), **cli):
    ns = dict(mode="wait", command=None, targets=list(targets), config=None)
    if yaml_text is not None:
        p = tmp_path / "e.yaml"
        p.write_text(yaml_text)
        ns["config"] = str(p)
    ns.update(cli)
    return config.build(SimpleNamespace(**ns), {})


def run_engine(cfg, limit=10.0):
    changes = []
    eng = Engine(cfg, cfg.dependencies, on_change=changes.append).start()
    assert eng.done.wait(limit), "the engine did not settle"
    eng.cancel()
    return {o.dep.name: o for o in eng.results()}, changes


# --------------------------------------------------------------------------- the waiting policy
# The Schedule (waitfor.wait.backoff) with an injected random source and the times given
# to it: no sleeping, and every rule of README "Waiting" / "Fleets" checked on its own.


def attempts(schedule, answer, until, first=0.0, deadline=None):
    """The attempt times of one dependency under `schedule`, from `first` to `until`, each
    answered at once with answer(t) (an exception)."""
    tries = backoff.Tries(first)
    t, times = first, [first]
    while True:
        t = schedule.next_at(tries, answer(t), t, t, deadline)
        if t >= until or (deadline is not None and t >= deadline):
            return times
        times.append(t)


def refused(t):
    return Refused("connection refused")


def starting(t):
    return NotReady("the database system is starting up")


def test_the_fast_window_polls_a_refused_dependency_every_interval_with_a_little_jitter():
    s = backoff.Schedule(0.05, 1.0, 2.0, rng=random.Random(1))
    times = attempts(s, refused, 2.0)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(0.05 - 1e-9 <= g <= 0.055 + 1e-9 for g in gaps), gaps
    assert len(set(round(g, 6) for g in gaps)) > 5  # random in its window
    assert 36 <= len(times) <= 41  # 2 s at 50-55 ms


def test_after_the_fast_window_one_attempt_per_max_interval():
    s = backoff.Schedule(0.05, 1.0, 2.0, rng=random.Random(2))
    times = attempts(s, refused, 30.0)
    slow = [t for t in times if t >= 2.0]
    gaps = [b - a for a, b in zip(slow, slow[1:])]
    assert all(g == pytest.approx(1.0) for g in gaps), gaps
    assert 2.0 <= slow[0] < 3.0  # its phase: somewhere in the first period after the window
    assert len(slow) == 28  # ~one a second from 2 s to 30 s


def test_an_attempt_that_takes_long_skips_to_the_next_slot_of_the_grid():
    s = backoff.Schedule(0.05, 1.0, 0.0, rng=random.Random(3))
    tries = backoff.Tries(0.0)
    a = s.next_at(tries, refused(0), 0.0, 0.0, None)
    b = s.next_at(tries, starting(a), a + 0.99, a + 0.99, None)  # answered just before the next slot
    assert b == pytest.approx(a + 2.0)  # never two attempts less than an interval apart
    c = s.next_at(tries, starting(b), b + 0.2, b + 0.2, None)
    assert c == pytest.approx(b + 1.0)


def test_each_waiter_has_its_own_random_phase_and_a_fleet_spreads_evenly():
    """200 waiters started at the same instant: after their fast window their attempts fall
    in every 100 ms bin of the second alike (peak <= 2x the mean), and stay in the same
    slot second after second; the dependencies of one waiter share its phase."""
    n = 200
    rng = random.Random(4)
    fleet = [backoff.Schedule(0.05, 1.0, 2.0, rng=random.Random(rng.random())) for _ in range(n)]
    bins = [0] * 80
    for s in fleet:
        for t in attempts(s, refused, 10.0):
            if t >= 2.0:
                bins[int((t - 2.0) * 10)] += 1
    mean = sum(bins) / len(bins)
    assert max(bins) <= 2 * mean, (max(bins), mean)
    assert n * 7.5 <= sum(bins) <= n * 8  # one attempt per waiter per second: 8 s
    # one waiter, two dependencies: the same slots
    s = backoff.Schedule(0.05, 1.0, 2.0, rng=random.Random(5))
    a = [t for t in attempts(s, refused, 8.0) if t >= 2.0]
    b = [t for t in attempts(s, refused, 8.0, first=0.7) if t >= 2.7]
    assert {round(t % 1.0, 9) for t in a} == {round(t % 1.0, 9) for t in b} and len(a) >= 5


def test_not_ready_backs_off_counting_not_ready_attempts_only():
    """A port refused for 1.5 s, then a server starting up: its backoff starts from the
    interval (the 30 refused attempts before do not count), x1.6 each, +-20 %."""
    s = backoff.Schedule(0.05, 1.0, 10.0, rng=random.Random(6))
    times = attempts(s, lambda t: refused(t) if t < 1.5 else starting(t), 9.9)
    after = [t for t in times if t >= 1.5]
    gaps = [b - a for a, b in zip(after, after[1:])]
    assert len(times) - len(after) >= 25
    for n, g in enumerate(gaps[:5]):
        base = min(0.05 * 1.6 ** n, 1.0)
        assert 0.8 * base - 1e-9 <= g <= 1.2 * base + 1e-9, (n, g, base)
    assert all(0.8 - 1e-9 <= g <= 1.2 + 1e-9 for g in gaps[-3:]), gaps  # the cap: max_interval


def test_not_ready_jitter_differs_between_waiters():
    firsts = set()
    for seed in range(20):
        s = backoff.Schedule(0.05, 1.0, 5.0, rng=random.Random(seed))
        times = attempts(s, starting, 1.0)
        firsts.add(round(times[3] - times[2], 6))
    assert len(firsts) == 20


def test_starting_up_after_the_window_is_asked_once_a_period_at_the_phase():
    """Refused for 10 s, then starting up: one login per period, in the waiter's slot."""
    s = backoff.Schedule(0.05, 1.0, 2.0, rng=random.Random(7))
    times = attempts(s, lambda t: refused(t) if t < 10 else starting(t), 20.0)
    slow = [t for t in times if t >= 2.0]
    assert all(b - a == pytest.approx(1.0) for a, b in zip(slow, slow[1:]))
    assert len([t for t in times if t >= 10]) == 10


def test_no_retry_past_the_deadline():
    for window in (5.0, 0.0):
        s = backoff.Schedule(0.5, 5.0, window, rng=random.Random(8))
        times = attempts(s, starting, 100.0, deadline=3.2)
        tries = backoff.Tries(0.0)
        assert s.next_at(tries, starting(3.1), 3.1, 3.1, 3.2) == pytest.approx(3.2)
        assert max(times) <= 3.2
        s = backoff.Schedule(0.5, 5.0, window, rng=random.Random(8))
        assert s.next_at(backoff.Tries(0.0), refused(0), 3.0, 3.0, 3.2) == pytest.approx(3.2)


def test_refused_retries_stretch_beyond_the_connect_rate(monkeypatch):
    monkeypatch.setattr(backoff, "CONNECT_RATE", 200)
    s = backoff.Schedule(0.05, 1.0, 10.0, rng=random.Random(9))
    deps = [backoff.Tries(0.0) for _ in range(40)]
    for d in deps:  # 40 refused at 20 a second: 800 a second, 4x the rate
        s.next_at(d, refused(0), 0.0, 0.0, None)
    at = s.next_at(deps[0], refused(0), 0.0, 0.0, None)
    assert at >= 0.05 * 4 - 1e-9
    for d in deps:
        s.forget(d)
    assert s.stretch() == 1.0


def test_interval_sets_the_fast_rate_and_zero_window_is_gentle_from_the_start():
    s = backoff.Schedule(0.2, 1.0, 2.0, rng=random.Random(10))
    times = attempts(s, refused, 2.0)
    assert 9 <= len(times) <= 11
    s = backoff.Schedule(0.05, 1.0, 0.0, rng=random.Random(11))
    times = attempts(s, refused, 10.0)
    assert 10 <= len(times) <= 11


# --------------------------------------------------------------------------- engine on real sockets


def test_closed_port_is_probed_at_most_about_20_times_a_second():
    cfg = cfg_for(targets=[f"127.0.0.1:{free_port()}"], timeout="1s")
    t0 = time.monotonic()
    res, _ = run_engine(cfg)
    took = time.monotonic() - t0
    (o,) = res.values()
    assert o.state == FAILED and "connection refused" in o.reason
    assert 0.9 <= took < 3
    assert o.attempts <= 22, o.attempts  # at most ~20 a second (50 ms + jitter)
    assert o.attempts >= 5, o.attempts  # and it does keep polling (a loaded CI box may lag)


def test_interval_sets_the_polling_rate():
    cfg = cfg_for(targets=[f"127.0.0.1:{free_port()}"], timeout="1s", interval="200ms")
    res, _ = run_engine(cfg)
    (o,) = res.values()
    assert 3 <= o.attempts <= 7, o.attempts


def test_answering_but_not_ready_backs_off():
    with HttpServer({"/": (503, b"", {})}) as srv:
        cfg = cfg_for(targets=[srv.url + "/"], timeout="1.2s")
        res, changes = run_engine(cfg)
    (o,) = res.values()
    assert o.state == FAILED and any("503" in c.reason for c in changes)
    assert 3 <= len(srv.requests) <= 8, len(srv.requests)  # not 24 as at the fixed interval


def test_all_in_parallel_and_ready_deps_are_not_probed_again(tmp_path):
    with TcpServer(delay=0.5) as a, TcpServer(delay=0.5) as b, HttpServer() as ready:
        slow = "".join(f"  - {{name: slow{i}, command: [sleep, '0.5']}}\n" for i in range(4))
        cfg = cfg_for(tmp_path, "timeout: 5s\ndependencies:\n" + slow + "".join(
            f"  - 127.0.0.1:{s.port}\n" for s in (a, b)) + f"  - {ready.url}/\n")
        t0 = time.monotonic()
        res, changes = run_engine(cfg)
        took = time.monotonic() - t0
        time.sleep(0.2)
    assert all(o.state == READY for o in res.values()), res
    assert took < 1.6  # one after the other, the four 0.5 s probes alone take 2 s
    assert len(ready.requests) == 1  # ready at once, and never asked again
    assert a.accepted == 1 and b.accepted == 1
    assert [c.state for c in changes].count(READY) == 7


def test_after_orders_probing(tmp_path):
    t0 = time.monotonic()
    with TcpServer(delay=0.5) as db, HttpServer() as api:
        cfg = cfg_for(tmp_path, f"""
timeout: 5s
dependencies:
  - {{name: db, url: "tcp://127.0.0.1:{db.port}"}}
  - {{name: api, url: "{api.url}/", after: [db]}}
  - {{name: last, url: "file:///", after: [api, db]}}
""")
        order = []
        eng = Engine(cfg, cfg.dependencies, on_change=lambda o: o.state == READY and order.append(
            (o.dep.name, time.monotonic() - t0)))
        eng.start()
        assert eng.done.wait(5)
        first_api_request = len(api.requests)
    assert [n for n, _ in order] == ["db", "api", "last"]
    assert order[0][1] >= 0.45
    assert first_api_request == 1  # api was not probed while db was down


def test_after_a_failed_dependency_is_not_probed(tmp_path):
    with HttpServer() as api:
        cfg = cfg_for(tmp_path, f"""
timeout: 400ms
dependencies:
  - {{name: db, url: "tcp://127.0.0.1:{free_port()}"}}
  - {{name: api, url: "{api.url}/", after: [db]}}
""")
        res, _ = run_engine(cfg)
    assert res["db"].state == FAILED
    assert res["api"].state == FAILED and "db" in res["api"].reason and res["api"].attempts == 0
    assert api.requests == []


def test_per_dependency_timeout(tmp_path):
    with TcpServer(delay=0.8) as late:
        cfg = cfg_for(tmp_path, f"""
timeout: 5s
dependencies:
  - {{name: quick, url: "tcp://127.0.0.1:{free_port()}", timeout: 300ms}}
  - {{name: late, url: "tcp://127.0.0.1:{late.port}"}}
""")
        res, _ = run_engine(cfg)
    assert res["quick"].state == FAILED and 0.25 <= res["quick"].elapsed < 1.0
    assert res["late"].state == READY and res["late"].elapsed >= 0.7


def test_broken_command_fails_at_once(tmp_path):
    cfg = cfg_for(tmp_path, "timeout: 10s\ndependencies:\n  - {name: gone, command: [/nonexistent/probe]}\n")
    t0 = time.monotonic()
    res, _ = run_engine(cfg, limit=3)
    assert time.monotonic() - t0 < 2  # not the 10 s timeout
    o = res["gone"]
    assert o.state == FAILED and o.broken and o.attempts == 1 and "not found" in o.reason


def test_broken_command_fails_fast_through_the_cli(tmp_path):
    y = tmp_path / "b.yaml"
    y.write_text(f"dependencies:\n  - {{name: gone, command: [/nonexistent/probe]}}\n  - 127.0.0.1:{free_port()}\n")
    marker = tmp_path / "ran"
    t0 = time.monotonic()
    r = waitfor("-t", "20", "-c", y, "--", "touch", marker)
    assert time.monotonic() - t0 < 3  # not the 20 s timeout
    assert r.returncode not in (0, 2) and not marker.exists()
    assert "gone" in r.stderr and "not found" in r.stderr


def _scheduler_threads():
    return [t for t in threading.enumerate() if t.name == "waitfor scheduler" or t.name.startswith("probe pool")]


def test_cancel_stops_every_waiter_at_once():
    cfg = cfg_for(targets=[f"127.0.0.1:{free_port()}" for _ in range(3)], timeout="0")
    eng = Engine(cfg, cfg.dependencies).start()
    time.sleep(0.2)
    assert [t.name for t in _scheduler_threads()] == ["waitfor scheduler"]  # tcp needs no pool
    t0 = time.monotonic()
    eng.cancel()
    while _scheduler_threads() and time.monotonic() - t0 < 2:
        time.sleep(0.01)
    assert not _scheduler_threads()
    assert time.monotonic() - t0 < 1
    assert all(o.state == WAITING for o in eng.results())


def _run_counting_threads(cfg):
    """Run the engine to the end; -> (engine, the most threads it added at once)."""
    before = threading.active_count()
    eng = Engine(cfg, cfg.dependencies).start()
    peak = 0
    while not eng.done.wait(0.05):
        peak = max(peak, threading.active_count() - before)
    eng.cancel()
    return eng, peak


def test_threads_do_not_grow_with_the_number_of_dependencies(tmp_path):
    """One scheduler thread for every tcp dependency, and a pool of at most
    POOL_SIZE threads for the kinds that block, whatever their number."""
    closed = [f"127.0.0.1:{free_port()}" for _ in range(150)]
    files = [f"file://{tmp_path}/missing-{i}" for i in range(20)]
    eng, peak = _run_counting_threads(cfg_for(targets=closed + files, timeout="1.5s"))
    assert 1 <= peak <= 1 + POOL_SIZE, peak
    res = eng.results()
    assert all(o.state == FAILED for o in res)
    tcp = [o for o in res if o.dep.kind == "tcp"]
    assert all("connection refused" in o.reason for o in tcp)
    assert min(o.attempts for o in tcp) >= 5  # every one of them kept being polled


def test_a_slow_probe_does_not_delay_a_tcp_dependency():
    """Probes that hang (HTTP servers that accept and never answer) fill the pool; a tcp
    dependency, probed in the scheduler itself, is still noticed at once."""
    hung = []
    for _ in range(POOL_SIZE + 2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # accepted by the kernel, never answered
        hung.append(s)
    late = TcpServer(delay=0.5)
    try:
        with late:
            cfg = cfg_for(targets=[f"http://127.0.0.1:{s.getsockname()[1]}/" for s in hung]
                          + [f"127.0.0.1:{late.port}"], timeout="4s", attempt_timeout="3s")
            ready_at = {}
            t0 = time.monotonic()

            def seen(o):
                if o.state == READY:
                    ready_at[o.dep.name] = time.monotonic() - t0

            eng = Engine(cfg, cfg.dependencies, on_change=seen).start()
            deadline = time.monotonic() + 3
            while not ready_at and time.monotonic() < deadline:
                time.sleep(0.01)
            eng.cancel()
    finally:
        for s in hung:
            s.close()
    assert list(ready_at) == [f"127.0.0.1:{late.port}"], ready_at
    assert ready_at[f"127.0.0.1:{late.port}"] < 1.5, ready_at


def test_the_attempt_timeout_bounds_a_connect_that_hangs():
    """A listener whose backlog is full drops new SYNs (Linux, tcp_abort_on_overflow=0), so
    a connect hangs: the scheduler ends each attempt at --attempt-timeout and tries again."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue (backlog 0 still admits one or two)
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        time.sleep(0.1)
        cfg = cfg_for(targets=[f"127.0.0.1:{port}"], timeout="1.6s", attempt_timeout="300ms")
        t0 = time.monotonic()
        res, _ = run_engine(cfg)
        took = time.monotonic() - t0
    finally:
        for c in fillers:
            c.close()
        srv.close()
    (o,) = res.values()
    assert o.state == FAILED and "connect timed out" in o.reason, o.reason
    assert o.attempts >= 3, o.attempts
    assert took < 3, took


def test_invert_waits_for_a_port_to_close():
    srv = TcpServer()
    srv.__enter__()
    threading.Timer(0.4, srv.__exit__, args=(None, None, None)).start()
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp())
    cfg = cfg_for(d, f"timeout: 3s\ndependencies:\n  - {{url: 'tcp://127.0.0.1:{srv.port}', invert: true}}\n")
    res, _ = run_engine(cfg)
    (o,) = res.values()
    assert o.state == READY and o.elapsed >= 0.3 and "gone" in o.reason


def test_a_command_probe_still_running_is_killed_when_the_wait_stops(tmp_path):
    # SIGTERM during the wait while a probe's program runs: waitfor exits at once (143),
    # and the program must not be left behind, re-parented to init.
    import signal
    import subprocess

    marker = tmp_path / "started"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "attempt_timeout: 20s\n"
        "dependencies:\n"
        f"  - command: [sh, -c, 'touch {marker}; exec sleep 7.25']\n"
    )
    proc = spawn("wait", "-c", str(cfg), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), "the probe's program never started"
    while not _leftovers() and time.monotonic() < deadline:  # `touch` ran; `exec sleep` is next
        time.sleep(0.02)
    assert _leftovers(), "test set-up: the program is not running"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 143
    deadline = time.monotonic() + 3
    while _leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _leftovers(), "the probe's program was left running"


def test_a_dependency_that_cannot_become_ready_is_reported_once(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dependencies:\n  - command: [/nonexistent/program]\n")
    r = waitfor("wait", "-c", cfg, timeout=15)
    assert r.returncode == 124, r.stderr
    assert r.stderr.count("/nonexistent/program: command not found") == 1, r.stderr


def _leftovers():
    return [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == "sleep 7.25"]


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def test_no_burst_of_attempts_below_the_interval():
    """The scheduler runs timers up to SLACK (5 ms) early; a delay shorter than that (a
    1 ms interval, or the last one squeezed by the deadline) must still wait for the next
    turn of the loop, not run again at once in a burst."""
    cfg = cfg_for(targets=[f"127.0.0.1:{free_port()}"], timeout="300ms", interval="1ms")
    res, _ = run_engine(cfg)
    (o,) = res.values()
    assert o.state == FAILED and 20 <= o.attempts <= 400, o.attempts  # ~1 per ms at most


def test_unix_sockets_are_probed_in_the_scheduler(tmp_path):
    """unix:// as tcp: in the loop, no pool thread; missing path and a stale socket file
    (nothing listening) are Refused, a socket that appears later is noticed."""
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # the file stays, nobody listens: ECONNREFUSED
    late = tmp_path / "late.sock"
    srv = socket.socket(socket.AF_UNIX)

    def listen():
        srv.bind(str(late))
        srv.listen(4)

    threading.Timer(0.4, listen).start()
    cfg = cfg_for(targets=[f"unix://{tmp_path}/missing.sock", f"unix://{stale}", f"unix://{late}"],
                  timeout="1.2s")
    eng, peak = _run_counting_threads(cfg)
    srv.close()
    res = {o.dep.url: o for o in eng.results()}
    assert peak == 1, peak  # the scheduler alone
    assert res[f"unix://{late}"].state == READY and res[f"unix://{late}"].reason == "accepted"
    missing = res[f"unix://{tmp_path}/missing.sock"]
    assert missing.state == FAILED and "No such file or directory" in missing.reason
    assert missing.attempts >= 5  # refused: the fast interval
    assert "Connection refused" in res[f"unix://{stale}"].reason


def test_a_driver_kind_on_a_closed_port_is_refused_by_the_scheduler():
    """While nothing listens, a driver kind's attempts are the scheduler's own
    connects (no pool thread, no driver); once something listens, the kind's probe runs in
    the pool (here it meets a server that hangs up: not ready, from the driver)."""
    pytest.importorskip("redis")
    port = free_port()
    cfg = cfg_for(targets=[f"redis://127.0.0.1:{port}/0"], timeout="2.5s")
    eng = Engine(cfg, cfg.dependencies).start()
    time.sleep(0.8)
    assert [t.name for t in _scheduler_threads()] == ["waitfor scheduler"]
    (o,) = eng.results()
    assert "connection refused" in o.reason and o.attempts >= 5, (o.reason, o.attempts)
    with TcpServer(port=port):  # accepts and closes at once: not a Redis
        assert eng.done.wait(5)
    eng.cancel()
    (o,) = eng.results()
    assert o.state == FAILED and "connection refused" not in o.reason, o.reason  # the driver's reason


def _slow_http_server(delay):
    """Answers every request 200 after `delay` seconds, each client in its own thread."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return

            def answer(c=conn):
                with c:
                    c.recv(4096)
                    time.sleep(delay)
                    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")

            threading.Thread(target=answer, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_one_attempt_each_runs_every_check_within_the_round():
    """check, health and each watch round make one attempt per dependency and wait about
    the attempt timeout: more blocking checks than POOL_SIZE must still all run at once (a
    queued one would be reported as failed and could stop a healthy app)."""
    srv = _slow_http_server(0.8)
    try:
        port = srv.getsockname()[1]
        cfg = cfg_for(targets=[f"http://127.0.0.1:{port}/{i}" for i in range(POOL_SIZE * 2 + 1)],
                      attempt_timeout="1.5s")
        eng = Engine(cfg, cfg.dependencies, single_attempt=True).start()
        assert eng.done.wait(2.4), [o.state for o in eng.results()]
        eng.cancel()
    finally:
        srv.close()
    assert all(o.state == READY for o in eng.results()), [(o.state, o.reason) for o in eng.results()]


def test_a_failing_observer_does_not_hang_the_wait(tmp_path):
    """on_change logs and saves the state file; if that raises, the engine must still
    settle and say it is done (before: done was never set, and the wait hung)."""
    def observer(o):
        if o.state == READY:
            raise OSError("disk full")

    cfg = cfg_for(targets=[f"file://{tmp_path}"])
    eng = Engine(cfg, cfg.dependencies, on_change=observer).start()
    assert eng.done.wait(3)
    eng.cancel()


def test_lookups_that_hang_do_not_pile_up_and_starve_the_pool(tmp_path, monkeypatch):
    """A resolver that does not answer (mocked: a real one that hangs cannot be made here)
    holds a pool thread past the attempt timeout; the same dependency must not queue more
    lookups behind it, and stale work is skipped, so other dependencies still run at once."""
    real = socket.getaddrinfo

    def hanging(host, *a, **k):
        if str(host).startswith("slow") and not k.get("flags", 0) & socket.AI_NUMERICHOST:
            time.sleep(3)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    late = tmp_path / "late"
    cfg = cfg_for(targets=[f"tcp://slow{i}.invalid:80" for i in range(POOL_SIZE - 1)] + [f"file://{late}"],
                  timeout="5s", attempt_timeout="300ms")
    ready_at = {}
    t0 = time.monotonic()
    eng = Engine(cfg, cfg.dependencies,
                 on_change=lambda o: o.state == READY and ready_at.setdefault(o.dep.kind, time.monotonic() - t0))
    eng.start()
    time.sleep(1.5)  # the slow lookups have timed out twice over meanwhile
    late.write_text("x")
    deadline = time.monotonic() + 3
    while "file" not in ready_at and time.monotonic() < deadline:
        time.sleep(0.02)
    eng.cancel()
    assert "file" in ready_at and ready_at["file"] < 2.3, ready_at
    assert all("still running" in o.reason or "timed out" in o.reason
               for o in eng.results() if o.dep.kind == "tcp"), [o.reason for o in eng.results()]


def _attempt_times(cfg, seconds):
    """Run the engine on `cfg` for `seconds`; -> {dependency name: [when each attempt began]}
    (the scheduler's clock), recorded as the loop starts each attempt."""
    eng = Engine(cfg, cfg.dependencies)
    times = {d.name: [] for d in cfg.dependencies}
    timer = eng._timer

    def recording(job, what):
        if what == "attempt":
            times[job.dep.name].append(eng.clock())
        return timer(job, what)

    eng._timer = recording  # the loop looks it up on the instance at each turn
    eng.start()
    time.sleep(seconds)
    eng.cancel()
    assert not eng.done.is_set()  # still waiting: every port stayed closed
    return times


def test_refused_retries_share_wake_ups_and_keep_the_interval():
    """Ten closed ports refused together are asked in the same turn of the loop
    (one wake-up per interval, not ten), and none more than once per interval."""
    cfg = cfg_for(targets=[f"127.0.0.1:{free_port()}" for _ in range(10)], timeout="30s")
    times = _attempt_times(cfg, 1.2)
    for name, ts in times.items():
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        assert 10 <= len(ts) <= 25, (name, len(ts))  # ~23 in 1.2 s: the interval, and its jitter
        assert min(gaps) >= 0.05 - 0.0005, (name, min(gaps))  # never below the interval
    # every attempt after the first falls in a turn shared with the nine others
    starts = sorted(t for ts in times.values() for t in ts[1:])
    turns = 1 + sum(1 for a, b in zip(starts, starts[1:]) if b - a > 0.002)
    assert turns <= 25, turns  # ~20; unshared, it would be ~180


def test_refused_retries_stretch_to_the_shared_connect_rate(monkeypatch):
    """Beyond CONNECT_RATE x interval refused dependencies, each is asked less
    often, so that all of them together stay near CONNECT_RATE attempts a second (here
    lowered to 200 a second for 40 closed ports: each ~5 a second instead of ~18)."""
    monkeypatch.setattr(backoff, "CONNECT_RATE", 200)
    cfg = cfg_for(targets=[f"127.0.0.1:{free_port()}" for _ in range(40)], timeout="30s", fast_window="30s")
    times = _attempt_times(cfg, 2.0)
    total = sum(len(ts) - 1 for ts in times.values())  # after the first round
    assert total <= 200 * 2.0 * 1.1, total
    assert total >= 200 * 2.0 * 0.5, total  # still asked: stretched, not stopped
    for name, ts in times.items():  # (the first retries come while the count still grows)
        gaps = [b - a for a, b in zip(ts[1:], ts[2:])]
        assert min(gaps) >= 0.05 * 40 / (200 * 0.05) - 0.001, (name, min(gaps))


def test_a_closed_port_slows_to_one_attempt_per_max_interval_after_the_fast_window():
    """The policy in the real scheduler, on real closed ports: fast for --fast-window, then
    one attempt per --max-interval, both ports of this waiter in the same slots."""
    cfg = cfg_for(targets=[f"127.0.0.1:{free_port()}" for _ in range(2)], timeout="30s",
                  fast_window="400ms", max_interval="300ms")
    times = _attempt_times(cfg, 2.0)
    for ts in times.values():
        fast = [t for t in ts if t - ts[0] < 0.4]
        slow = [t for t in ts if t - ts[0] >= 0.4]
        assert len(fast) >= 4, ts  # ~7 at 50-55 ms (fewer on a loaded machine)
        gaps = [b - a for a, b in zip(slow, slow[1:])]
        assert 3 <= len(slow) <= 6, ts  # 1.6 s at one per 300 ms
        assert all(g >= 0.3 - 0.03 for g in gaps), gaps  # (the grid; a late wake-up shortens one gap)
    a, b = times.values()
    slow_a, slow_b = [t for t in a if t - a[0] >= 0.4], [t for t in b if t - b[0] >= 0.4]
    assert len(slow_a) == len(slow_b) and all(abs(x - y) < 0.003 for x, y in zip(slow_a, slow_b)), (a, b)


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_one_connection_per_attempt_for_a_driver_kind(tmp_path, kind):
    """Issue 17: a real counting TCP proxy in front of the real server. While the proxy is
    not listening, the scheduler's connects are refused; once it listens, each attempt is
    the driver's login alone (not ready: the database or the key does not exist), with no
    TCP connect of its own before it. The one extra connection is the scheduler's own
    connect at the moment the port opens."""
    from helpers.core import CountingProxy

    upstream = {"postgres": 5432, "redis": 6379}[kind]
    pytest.importorskip({"postgres": "psycopg", "redis": "redis"}[kind])
    proxy = CountingProxy(upstream)
    url, option = {
        "postgres": (f"postgres://root@127.0.0.1:{proxy.port}/waitfor_no_such_db", ""),
        "redis": (f"redis://127.0.0.1:{proxy.port}/0", ", key: waitfor-no-such-key"),
    }[kind]
    cfg = cfg_for(tmp_path, f"timeout: 4s\ninterval: 50ms\nmax_interval: 150ms\nfast_window: 300ms\n"
                            f"dependencies:\n  - {{url: '{url}'{option}}}\n")
    threading.Timer(0.4, proxy.start).start()
    try:
        res, changes = run_engine(cfg, limit=15)
    finally:
        proxy.stop()
    (o,) = res.values()
    assert o.state == FAILED and "connection refused" not in o.reason, o.reason  # the driver's reason
    assert any("connection refused" in c.reason for c in changes)  # it was refused first
    logins = proxy.spoke
    assert logins >= 10, (logins, proxy.connections)
    assert proxy.connections <= 1.1 * logins, (proxy.connections, logins)


def test_the_watch_reuses_the_probes_built_before_the_wait(tmp_path, monkeypatch):
    """Issue 19: every round of the runtime watch calls the probes that commands/run.py
    built once before the wait, instead of building every driver's probe again."""
    from waitfor.supervise.watch import Watch
    from waitfor.wait import engine

    (tmp_path / "ok").write_text("x")
    cfg = cfg_for(targets=[f"file://{tmp_path}/ok"])
    (dep,) = cfg.dependencies
    built = engine.build_probes(cfg.dependencies)
    calls = []

    def counting(timeout):
        calls.append(timeout)
        return built[dep.name](timeout)

    def no_new_probe(d):
        raise AssertionError(f"{d.name}: a probe built again")

    monkeypatch.setattr(engine, "make_probe", no_new_probe)
    status = SimpleNamespace(record=lambda *a: 0, save=lambda: None)
    watch = Watch(cfg, status, log=None, on_failure=lambda o: None, probes={dep.name: counting})
    for _ in range(3):
        assert watch.round() is None
    assert len(calls) == 3


def test_without_a_wake_up_pair_the_loop_still_gets_its_results(tmp_path, monkeypatch):
    """Issue 16 D14: out of fds for the scheduler's wake-up pair (mocked: the limit cannot be
    made to hit exactly that call here), the loop polls for pool results instead, and makes
    the pair once fds are free again; the wait is not an internal error."""
    import errno as errno_

    real = socket.socketpair
    failures = [3]

    def scarce(*a, **k):
        if failures[0]:
            failures[0] -= 1
            raise OSError(errno_.EMFILE, "Too many open files")
        return real(*a, **k)

    monkeypatch.setattr(socket, "socketpair", scarce)
    late = tmp_path / "late"
    threading.Timer(0.3, late.write_text, args=("x",)).start()
    cfg = cfg_for(targets=[f"file://{late}"], timeout="5s")
    res, _ = run_engine(cfg)
    (o,) = res.values()
    assert o.state == READY, o.reason
    assert failures[0] == 0  # it kept trying, and got its pair


def test_a_dependency_held_by_after_is_reported_as_such_at_the_deadline(tmp_path):
    """Issue 16 D20: at the deadline, a dependency that `after:` held back is reported as
    "not probed: api (after:) is not ready", every time (it said "first attempt still
    running" in 16 of 18 runs: the main thread took the results while the scheduler was
    still settling both at the same deadline)."""
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dependencies:\n  - {{name: api, url: 'tcp://127.0.0.1:{free_port()}'}}\n"
                   "  - {name: web, url: 'tcp://127.0.0.1:1', after: [api]}\n")
    procs = [subprocess.Popen([sys.executable, "-m", "waitfor", "wait", "-c", str(cfg), "-t", "700ms"],
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for p in procs:
        _, err = p.communicate(timeout=30)
        assert p.returncode == 124, err
        assert "not ready: web (tcp://127.0.0.1:1): not probed: api (after:) is not ready" in err, err
        assert "still running" not in err, err
