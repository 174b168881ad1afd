"""Hand-over in exec mode (not PID 1): waitfor replaces itself with COMMAND, and the app
sees the signal mask and ignored signals waitfor inherited (SigBlk/SigIgn of
/proc/self/status), with SIGPIPE and SIGXFSZ at their defaults although Python ignores
them, whether or not there was anything to wait for first."""

import signal
import subprocess
import sys
import time

import pytest

from helpers.core import TcpServer, clean_env, spawn, waitfor


def bits(sigs) -> int:
    return sum(1 << (int(s) - 1) for s in sigs)


PARENT = """
import os, signal, sys
blocked, ignored = eval(sys.argv[1]), eval(sys.argv[2])
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # this parent's Python ignored them: undo
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
for s in ignored:
    signal.signal(s, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
os.execv(sys.executable, [sys.executable] + sys.argv[3:])
"""


def app_status(blocked=(), ignored=(), deps=()):
    """Run `waitfor [deps] -- grep Sig /proc/self/status` from a parent that blocks/ignores
    signals (a small Python that sets them, then execs waitfor; no preexec_fn in a threaded
    pytest). The app is not Python: Python would ignore SIGPIPE itself."""
    argv = [sys.executable, "-c", PARENT, repr(sorted(map(int, blocked))), repr(sorted(map(int, ignored))),
            "-m", "waitfor", "-t", "5", *deps, "--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]
    r = subprocess.run(argv, env=clean_env(), capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(":\t") for line in r.stdout.splitlines())
    return int(fields["SigBlk"], 16), int(fields["SigIgn"], 16)


@pytest.fixture(params=["no dependency", "after a wait"])
def deps(request):
    if request.param == "no dependency":
        yield ()
    else:
        with TcpServer(delay=0.2) as srv:
            yield (f"127.0.0.1:{srv.port}",)


def test_clean_parent_gives_clean_app(deps):
    blk, ign = app_status(deps=deps)
    assert blk == 0, hex(blk)
    assert ign & bits([signal.SIGPIPE, signal.SIGXFSZ]) == 0, hex(ign)  # Python's own, not inherited
    assert ign == 0, hex(ign)


def test_inherited_mask_and_ignored_signals_reach_the_app(deps):
    blocked = {signal.SIGUSR1, signal.SIGWINCH, signal.SIGTERM}
    ignored = {signal.SIGUSR2, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT}
    blk, ign = app_status(blocked, ignored, deps)
    assert blk == bits(blocked), (hex(blk), hex(bits(blocked)))
    assert ign == bits(ignored), (hex(ign), hex(bits(ignored)))
    assert not ign & bits([signal.SIGPIPE])


def test_sigpipe_is_default_in_the_app():
    """`yes | head -1`: yes must die of SIGPIPE (141), not see EPIPE forever or complain."""
    r = waitfor("--", "bash", "-c", "yes | head -1 >/dev/null; echo ${PIPESTATUS[0]}",
                env=clean_env(), capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "141", (r.stdout, r.stderr)
    assert "Broken pipe" not in r.stderr


def test_waitfor_becomes_the_app():
    """exec, not a child: same PID, and a signal to it reaches the app directly."""
    with TcpServer() as srv:
        p = spawn("-t", "5", f"127.0.0.1:{srv.port}", "--", "sh", "-c", "echo $$; exec sleep 30",
                  env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            pid = int(p.stdout.readline())
            assert pid == p.pid
            time.sleep(0.1)
            p.send_signal(signal.SIGTERM)
            p.wait(5)
        finally:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGTERM
