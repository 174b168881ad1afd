"""Init options at parity with tini and dumb-init: `--pdeathsig SIG` (tini -p),
`--leftovers kill|term|keep` (dumb-init's process-group and setsid modes), and the
supervisor's working directory (dumb-init's chdir("/")). Black-box, through the real CLI,
as PID 1 of a PID namespace or as a plain process with --init / exec mode."""

import os
import signal
import subprocess

import pytest

from helpers.core import WAITFOR, repo_env, waitfor
from helpers.pid1 import PROLOGUE, Lines, Waitfor, alive, app, pid_namespace_unavailable

pytestmark = pytest.mark.pid1


def _need_ns():
    reason = pid_namespace_unavailable()
    if reason:
        pytest.skip(reason)


# --------------------------------------------------------------------------- --pdeathsig

# Reports "ready PID" and each signal: "sig N". Exits after the first, or after 3 s.
SIG_APP = PROLOGUE + """
signal.pthread_sigmask(signal.SIG_BLOCK, CATCHABLE)
say(f"ready {os.getpid()}")
info = signal.sigtimedwait([s for s in CATCHABLE if s != signal.SIGCHLD], 3)
say(f"sig {info.si_signo}" if info else "none")
"""


def run_orphaned(args, parent_lives=1.0):
    """waitfor started by a middle `sh` that exits after `parent_lives` s, as a process
    manager that dies would. Returns the app's report lines."""
    r, w = os.pipe()
    env = repo_env(REPORT_FD=str(w))
    argv = ["sh", "-c", f'"$@" & sleep {parent_lives}', "sh", *WAITFOR, *args, "--", *app(SIG_APP)]
    mid = subprocess.Popen(argv, env=env, pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, start_new_session=True)
    os.close(w)
    lines = Lines(r)
    try:
        ready = lines.line(10)
        assert ready and ready.startswith("ready"), (ready, mid.stderr.read1() if mid.poll() is not None else "")
        mid.wait(10)
        return [ready, *lines.rest(6)]
    finally:
        os.close(r)
        subprocess.run(["pkill", "-KILL", "-s", str(mid.pid)], check=False)


@pytest.mark.parametrize("mode", [["--init"], []], ids=["init", "exec"])
def test_pdeathsig_reaches_the_app_when_the_parent_dies(mode):
    lines = run_orphaned([*mode, "--pdeathsig", "USR1"])
    assert lines[1] == f"sig {int(signal.SIGUSR1)}", lines


def test_without_pdeathsig_the_parents_death_sends_nothing():
    lines = run_orphaned(["--init"])
    assert lines[1] == "none", lines


def test_pdeathsig_also_when_dropping_to_a_user():
    """The kernel clears PR_SET_PDEATHSIG when credentials change: it must be set after."""
    if os.geteuid() != 0 or not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("needs root and a system python3 that nobody may run")
    r, w = os.pipe()
    env = repo_env(REPORT_FD=str(w))
    argv = ["sh", "-c", '"$@" & sleep 1', "sh", *WAITFOR, "--init", "--user", "nobody", "--pdeathsig", "USR1",
            "--", "/usr/bin/python3", "-I", "-S", "-c", SIG_APP]
    mid = subprocess.Popen(argv, env=env, pass_fds=(w,), stdin=subprocess.DEVNULL, start_new_session=True,
                           stderr=subprocess.PIPE)
    os.close(w)
    lines = Lines(r)
    try:
        assert (lines.line(10) or "").startswith("ready")
        assert lines.line(6) == f"sig {int(signal.SIGUSR1)}"
    finally:
        os.close(r)
        mid.wait(10)
        subprocess.run(["pkill", "-KILL", "-s", str(mid.pid)], check=False)


def test_pdeathsig_as_pid1_is_ignored_and_harmless():
    _need_ns()
    with Waitfor(["--pdeathsig", "USR1"], ["sh", "-c", "exit 7"]) as w:
        assert w.wait(10) == 7, w.err


def test_bad_pdeathsig_is_exit_2():
    r = waitfor("--pdeathsig", "NOPE", "--", "true", env=repo_env(), timeout=20)
    assert r.returncode == 2 and "--pdeathsig" in r.stderr and "unknown signal" in r.stderr, r.stderr


# --------------------------------------------------------------------------- --leftovers

# The app starts a child that reports SIGTERM (and keeps running), then exits at once.
LEFT_APP = PROLOGUE + """
kid = os.fork()
if kid == 0:
    signal.signal(signal.SIGTERM, lambda *a: say("kid TERM"))
    say(f"kid {os.getpid()}")
    for _ in range(300):
        time.sleep(0.1)
    os._exit(0)
time.sleep(0.3)
os._exit(5)
"""


def leftover_run(args, pid1):
    with Waitfor([*args, "--stop-timeout", "8s", *([] if pid1 else ["--init"])], app(LEFT_APP), pid1=pid1) as w:
        kid = int(w.report.line(10).split()[1])
        code = w.wait(20)
        lines = w.report.rest(1 if pid1 else 0.5)
        # (as PID 1 the kid's pid is the namespace's, and the kernel ended it with the init)
        still = alive(kid) if not pid1 else None
        if still:
            os.kill(kid, signal.SIGKILL)
        return code, w.elapsed, lines, still, w.err


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "init"])
def test_leftovers_term_sends_one_term_and_exits_at_once(pid1):
    if pid1:
        _need_ns()
    code, took, lines, still, err = leftover_run(["--leftovers", "term"], pid1)
    assert code == 5, err
    assert "sending SIGTERM to the processes left, and not waiting" in err, err
    if not pid1:
        assert "kid TERM" in lines, (lines, err)
    # As PID 1 the kernel SIGKILLs the namespace as soon as waitfor exits, right after the
    # SIGTERM: the kid's handler runs only if it gets the CPU in between, which is not
    # promised (1 run in 6-15 here it did not). That kill(-1, SIGTERM) reaches every
    # process as PID 1 is checked where waitfor waits for the grace (test_pid1.py).
    assert took < 5, f"no waiting out the 8 s grace: {took:.1f}s"
    assert still or pid1, "outside PID 1 the leftover keeps running"


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "init"])
def test_leftovers_keep_sends_nothing_and_exits_at_once(pid1):
    if pid1:
        _need_ns()
    code, took, lines, still, err = leftover_run(["--leftovers", "keep"], pid1)
    assert code == 5, err
    assert "kid TERM" not in lines, lines
    assert took < 5
    assert still or pid1


def test_leftovers_default_still_waits_for_the_grace_then_kills():
    _need_ns()
    code, took, lines, _, err = leftover_run(["--stop-timeout", "1s"], True)
    assert code == 5 and "kid TERM" in lines, (lines, err)
    assert took >= 1, "the default waits out the grace (the kid ignores TERM)"


def test_bad_leftovers_is_exit_2(tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text("leftovers: maybe\n")
    r = waitfor("-c", str(cfg), "--", "true", env=repo_env(), timeout=20)
    assert r.returncode == 2 and "w.yaml:1: leftovers" in r.stderr and "kill, term, keep" in r.stderr, r.stderr


# --------------------------------------------------------------------------- working directory

CWD_APP = PROLOGUE + """
say("app " + os.getcwd())
say("sup " + os.readlink(f"/proc/{os.getppid()}/cwd"))
"""


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "init"])
def test_the_supervisor_leaves_the_launch_directory_the_app_keeps_it(pid1, tmp_path):
    if pid1:
        _need_ns()
    with Waitfor([] if pid1 else ["--init"], app(CWD_APP), pid1=pid1, cwd=str(tmp_path)) as w:
        assert w.wait(20) == 0, w.err
        lines = w.report.rest(1)
    assert lines == [f"app {tmp_path}", "sup /"], lines
