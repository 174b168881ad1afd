"""PID 1 done right: black-box tests of `waitfor run` as a container's init.

waitfor runs through its real CLI as PID 1 of a fresh PID namespace (as a container runtime
starts it), or as a plain process for `--init` / exec mode. What the apps saw comes back
through a report pipe (see helpers/pid1.py). Every wait is bounded.
"""

import concurrent.futures
import os
import pty
import random
import signal
import subprocess
import time

import pytest

from helpers.core import PY, WAITFOR, repo_env, waitfor
from helpers.pid1 import (
    NS,
    PROLOGUE,
    SIGWAIT_APP,
    STATUS_APP,
    Lines,
    Waitfor,
    alive,
    app,
    catchable,
    child_pids,
    pid_namespace_unavailable,
    sig_name,
    sigmask_of,
)

pytestmark = pytest.mark.pid1

RTMIN = int(signal.SIGRTMIN)


@pytest.fixture(autouse=True)
def _need_pid_namespace(request):
    reason = pid_namespace_unavailable()
    if reason and getattr(request.function, "needs_namespace", True):
        pytest.skip(reason)


def without_namespace(fn):
    fn.needs_namespace = False
    return fn


def controlling_tty():
    """preexec_fn: make stdin (a pty slave) the controlling terminal of the new session."""
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def inherit(ignore=(), block=()):
    """preexec_fn giving waitfor an inherited signal state, as a parent process would."""

    def setup():
        for s in ignore:
            signal.signal(s, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, block)

    return setup


def run(args, app_argv, *, pid1=True, timeout=20, **kw):
    with Waitfor(args, app_argv, pid1=pid1, **kw) as w:
        w.wait(timeout)
        w.report_lines = w.report.rest(1)
        return w


def parallel(fn, items, workers=4):
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


# --------------------------------------------------------------------------- modes


def test_pid1_supervises_the_app_as_its_child():
    w = run([], ["sh", "-c", 'echo "$$ $PPID"'])
    assert w.returncode == 0, w.err
    pid, ppid = map(int, w.out.split())
    assert ppid == 1 and pid != 1, "as PID 1, waitfor must start the app as its child"


def test_exec_flag_replaces_waitfor_even_as_pid1():
    w = run(["--exec"], ["sh", "-c", 'echo "$$"'])
    assert w.returncode == 0, w.err
    assert w.out.split() == ["1"], "--exec: the app must be PID 1 itself"


def test_outside_pid1_waitfor_execs_the_app():
    w = run([], ["sh", "-c", 'echo "$$"'], pid1=False)
    assert w.returncode == 0, w.err
    assert int(w.out) == w.proc.pid, "outside PID 1 the app must replace waitfor (same pid)"


def test_init_flag_supervises_outside_pid1():
    w = run(["--init"], ["sh", "-c", 'echo "$$ $PPID"'], pid1=False)
    assert w.returncode == 0, w.err
    pid, ppid = map(int, w.out.split())
    assert ppid == w.proc.pid and pid != w.proc.pid


# --------------------------------------------------------------------------- forwarding

FORWARDED = [s for s in catchable() if s != signal.SIGCHLD]


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "init"])
def test_every_catchable_signal_is_forwarded_except_sigchld(pid1):
    """TERM, INT, HUP, QUIT, USR1, USR2, WINCH, CONT, ALRM, TSTP, TTIN, TTOU, the
    real-time signals, and even SEGV & co. when they are sent with kill(2): each reaches
    the app once, in order, sent by waitfor. SIGCHLD (sent first) is waitfor's own."""
    args = [] if pid1 else ["--init"]
    with Waitfor(args, app(SIGWAIT_APP, len(FORWARDED), 0), pid1=pid1) as w:
        ready = w.report.line()
        assert ready and ready.startswith("ready"), (ready, w.err)
        app_pid = int(ready.split()[1])
        w.kill(signal.SIGCHLD)
        for s in FORWARDED:
            w.kill(s)
            line = w.report.line(5)
            assert line is not None, f"{sig_name(s)} was not forwarded; stderr: {w.err}"
            got, pid, sender = map(int, line.split()[1:])
            assert (sig_name(got), pid) == (sig_name(s), app_pid)
            assert sender == (1 if pid1 else w.proc.pid), f"{sig_name(s)} must come from waitfor, not {sender}"
        assert w.wait(10) == 0, w.err
        assert w.report.rest(1) == [], "SIGCHLD or a duplicate was forwarded"


def test_group_sends_to_the_whole_process_group():
    sigs = [signal.SIGUSR1, signal.SIGTERM, RTMIN + 1]
    with Waitfor(["--group", "--stop-timeout", "2s"], app(SIGWAIT_APP, len(sigs), 0, "fork-wait")) as w:
        ready = {w.report.line(), w.report.line()}
        assert all(r and r.startswith("ready") for r in ready), (ready, w.err)
        pids = {int(r.split()[1]) for r in ready}
        assert len({int(r.split()[2]) for r in ready}) == 1, "both must share a process group"
        for s in sigs:
            w.kill(s)
            got = {w.report.line(5), w.report.line(5)}
            assert {(int(x.split()[1]), int(x.split()[2])) for x in got if x} == {(s, p) for p in pids}, (got, w.err)
        assert w.wait(10) == 0, w.err


def test_without_group_only_the_app_gets_the_signal():
    # The app's second process (same process group) must not see USR1; it only sees the
    # SIGTERM of the clean-up once the app has exited.
    with Waitfor(["--stop-timeout", "2s"], app(SIGWAIT_APP, 1, 0, "fork")) as w:
        ready = [w.report.line(), w.report.line()]
        assert all(r and r.startswith("ready") for r in ready), (ready, w.err)
        main_pid = next(int(r.split()[1]) for r in ready if r.split()[1] == r.split()[2])  # leads the group
        w.kill(signal.SIGUSR1)
        assert w.wait(10) == 0, w.err
        got = [tuple(map(int, line.split()[1:3])) for line in w.report.seen[2:] + w.report.rest(1)]
        assert [g for g in got if g[0] == signal.SIGUSR1] == [(signal.SIGUSR1, main_pid)], got


def test_rewrite_maps_and_drops():
    args = ["--rewrite", "TERM:QUIT", "--rewrite", "USR1:-", "--rewrite", "RTMIN+2:USR2"]
    with Waitfor(args, app(SIGWAIT_APP, 3, 0)) as w:
        assert (w.report.line() or "").startswith("ready"), w.err
        w.kill(signal.SIGTERM)
        assert int(w.report.line(5).split()[1]) == signal.SIGQUIT
        # USR1 is dropped: the next signal the app sees is USR2 (a pending USR1 would come
        # first: sigwaitinfo returns the lowest-numbered standard signal).
        w.kill(signal.SIGUSR1)
        w.kill(signal.SIGUSR2)
        assert int(w.report.line(5).split()[1]) == signal.SIGUSR2
        w.kill(RTMIN + 2)
        assert int(w.report.line(5).split()[1]) == signal.SIGUSR2
        assert w.wait(10) == 0, w.err
        assert w.report.rest(1) == []


# --------------------------------------------------------------------------- start-up

# Exits 0 once it has USR1, which it inherited blocked; 1 if none comes within 5 s.
WAIT_USR1_APP = PROLOGUE + """
got = signal.sigtimedwait({signal.SIGUSR1}, 5)
sys.exit(0 if got else 1)
"""


def test_no_signal_lost_at_startup(tmp_path):
    """A USR1 sent at any moment of waitfor's start (its interpreter, the wait, the exec of
    the supervisor, the fork and exec of the app) reaches the app. The app inherits USR1
    blocked from the test, so that a signal arriving before the app could install a handler
    is not lost to the app's own start-up (that part is the app's, not waitfor's): the
    app then takes it with sigtimedwait, whenever it came."""
    (tmp_path / "dep").touch()
    args = [f"file://{tmp_path}/dep"]
    rng = random.Random(3)
    delays = [rng.uniform(0, 0.12) for _ in range(200)]

    def one(i_delay):
        i, delay = i_delay
        pid1 = i % 4 != 3  # mostly as PID 1, some with --init
        with Waitfor(args if pid1 else ["--init"] + args, app(WAIT_USR1_APP), pid1=pid1,
                     preexec_fn=inherit(block={signal.SIGUSR1})) as w:
            target = w.pid
            time.sleep(delay)  # deliberately random: not a synchronisation
            os.kill(target, signal.SIGUSR1)
            return w.wait(15), delay, pid1, w.err

    results = parallel(one, enumerate(delays))
    lost = [(round(d, 3), p, code, e.strip().splitlines()[-1:]) for code, d, p, e in results if code != 0]
    assert not lost, f"{len(lost)}/200 lost USR1 (delay, as PID 1, exit code, stderr): {lost[:5]}"


def test_signals_during_the_dependency_wait_reach_the_app(tmp_path):
    """As PID 1, a signal that arrives while waitfor waits for a dependency (other than the
    ones that stop the wait) is held and forwarded once the app runs, including SIGPIPE and
    SIGXFSZ, which the Python interpreter ignores at start-up (an ignored signal's pending
    instance is discarded, POSIX sigaction(2)), and SEGV sent with kill(2).

    The app is `sleep`, which inherits them blocked and leaves its mask alone, so they stay
    pending on it, and the test reads its pending set from /proc (neither a Python app, whose
    start-up discards SIGPIPE, nor dash, which unblocks everything while it waits for a
    child, could hold them)."""
    dep = tmp_path / "dep"
    sigs = {signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGALRM, signal.SIGCONT,
            signal.SIGPIPE, signal.SIGXFSZ, signal.SIGSEGV, RTMIN + 3}
    with Waitfor([f"file://{dep}"], ["sleep", "30"], preexec_fn=inherit(block=sigs)) as w:
        assert w.stderr.until(lambda line: "waiting" in line, 10), f"no wait started: {w.err}"
        for s in sorted(sigs):
            w.kill(s)
        dep.touch()
        deadline, pending, app_pid = time.monotonic() + 5, set(), None
        while pending != sigs and time.monotonic() < deadline:
            time.sleep(0.01)  # polling what the test observes, with a deadline
            kids = child_pids(w.pid)
            if kids:
                app_pid = kids[0]
                try:
                    with open(f"/proc/{app_pid}/status") as f:
                        pending = sigmask_of(f.read(), "ShdPnd")
                except OSError:
                    pass
        assert app_pid, f"the app did not start: {w.err}"
        os.kill(app_pid, signal.SIGKILL)
        assert w.wait(10) == 128 + signal.SIGKILL, w.err
        assert sorted(map(sig_name, sigs - pending)) == [], "lost on the way to the app"
        assert sorted(map(sig_name, pending - sigs)) == [], "forwarded, but never sent"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_term_during_the_wait_stops_at_once_and_the_app_never_starts(tmp_path, sig):
    marker = tmp_path / "started"
    with Waitfor(["127.0.0.1:1", "--timeout", "30s"], ["touch", str(marker)]) as w:
        assert w.stderr.until(lambda line: "waiting" in line, 10), f"no wait started: {w.err}"
        t0 = time.monotonic()
        w.kill(sig)
        assert w.wait(10) == 128 + sig, w.err
        assert time.monotonic() - t0 < 2, "the wait must end at once"
    assert not marker.exists(), "the app must never start"


# --------------------------------------------------------------------------- the child's start


PARENT_STATES = {
    "clean": ((), ()),
    "ignored_and_blocked": ((signal.SIGHUP, signal.SIGUSR1, signal.SIGINT, signal.SIGTERM),
                            (signal.SIGUSR2, signal.SIGWINCH, RTMIN + 4)),
}


@pytest.mark.parametrize("state", list(PARENT_STATES))
@pytest.mark.parametrize("mode", ["pid1", "init", "exec", "pid1-exec"])
def test_app_inherits_the_signal_state_waitfor_inherited(mode, state):
    """The app sees the mask and ignored set that waitfor's parent gave waitfor, caught
    nothing, and not Python's changes (SIGPIPE and SIGXFSZ ignored, a SIGINT handler).
    `cat` reads its own /proc/self/status without touching any signal."""
    ignore, block = PARENT_STATES[state]
    args = {"pid1": [], "init": ["--init"], "exec": [], "pid1-exec": ["--exec"]}[mode]
    w = run(args, STATUS_APP, pid1=mode.startswith("pid1"), preexec_fn=inherit(ignore, block))
    assert w.returncode == 0, w.err
    names = lambda sigs: sorted(map(sig_name, sigs))  # noqa: E731
    assert names(sigmask_of(w.out, "SigBlk")) == names(block)
    assert names(sigmask_of(w.out, "SigIgn")) == names(ignore)
    assert names(sigmask_of(w.out, "SigCgt")) == []
    assert names(sigmask_of(w.out, "SigPnd")) == [] and names(sigmask_of(w.out, "ShdPnd")) == []


ENV_APP = PROLOGUE + """
say(f"pgid {os.getpgrp()} pid {os.getpid()} sid {os.getsid(0)}")
say(f"cwd {os.getcwd()}")
say("env " + repr(sorted(os.environ.items())))
data = sys.stdin.read()
sys.stdout.write("app-out " + data)
sys.stderr.write("app-err\\n")
"""


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "init"])
def test_app_has_its_own_group_and_the_same_cwd_env_and_stdio(tmp_path, pid1):
    stdin = tmp_path / "in"
    stdin.write_text("from-stdin\n")
    with open(stdin) as f:
        w = run([] if pid1 else ["--init"], app(ENV_APP), pid1=pid1, stdin=f, cwd=tmp_path,
                env={"PID1_TEST_VAR": "v=1 2"})
    assert w.returncode == 0, w.err
    _, pgid, _, pid, _, _sid = w.report_lines[0].split()
    assert pgid == pid, "the app must lead its own process group (as a shell starts a job)"
    assert w.report_lines[1] == f"cwd {tmp_path}"
    assert w.report_lines[2] == "env " + repr(sorted(w.env.items())), "the environment, unchanged"
    assert w.out == "app-out from-stdin\n", "stdout carries the app's output, and only that"
    assert "app-err" in w.err


def test_stdout_carries_only_the_apps_output(tmp_path):
    (tmp_path / "dep").touch()
    w = run(["-v", f"file://{tmp_path}/dep", "--log-format", "json"], ["echo", "only this"])
    assert w.returncode == 0, w.err
    assert w.out == "only this\n"
    assert w.err.strip(), "waitfor's own logs go to stderr"


# The terminal's foreground group and the signals its keys send.
TTY_APP = PROLOGUE + """
signal.pthread_sigmask(signal.SIG_BLOCK, CATCHABLE)
say(f"ready {os.getpid()} {os.getpgrp()} {os.tcgetpgrp(0)} {os.isatty(0)}")
for _ in range(2):
    info = signal.sigwaitinfo(CATCHABLE)
    say(f"sig {info.si_signo} {info.si_pid}")
"""


def test_tty_app_is_the_foreground_group_so_ctrl_c_and_ctrl_z_reach_it():
    """As `docker run -it` starts it: PID 1 leads a session whose controlling terminal is
    stdin. The app must be the terminal's foreground process group, so that ^C and ^Z
    (sent by the terminal to that group, termios(3)) reach the app, from the kernel
    (si_pid 0), and waitfor itself gets neither (else the app would get them twice)."""
    master, slave = pty.openpty()
    try:
        argv_prefix = ["setsid", "--ctty"]  # inside the namespace: PID 1 leads the session
        r, wfd = os.pipe()
        env = dict(os.environ, REPORT_FD=str(wfd))
        proc = subprocess.Popen(NS + argv_prefix + WAITFOR + ["--", *app(TTY_APP)], stdin=slave, stdout=slave,
                                stderr=subprocess.PIPE, pass_fds=(wfd,), env=env, start_new_session=True)
        os.close(wfd)
        report = Lines(r)
        try:
            ready = report.line(10)
            assert ready and ready.startswith("ready"), ready
            _, pid, pgid, fg, isatty = ready.split()
            assert isatty == "True"
            assert pgid == pid, "the app leads its own group"
            assert fg == pgid, "the app's group must be the terminal's foreground group"
            os.write(master, b"\x03")
            line = report.line(5)
            assert line == f"sig {int(signal.SIGINT)} 0", line
            os.write(master, b"\x1a")
            line = report.line(5)
            assert line == f"sig {int(signal.SIGTSTP)} 0", line
            assert proc.wait(10) == 0
            assert report.rest(1) == [], "waitfor must not get (and forward) the terminal's signals"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            proc.stderr.close()
            os.close(r)
    finally:
        os.close(master)
        os.close(slave)


# --------------------------------------------------------------------------- reaping

ORPHANS_APP = PROLOGUE + """
n = int(sys.argv[1])
r, w = os.pipe()
for _ in range(n):
    mid = os.fork()
    if mid == 0:
        gc = os.fork()
        if gc == 0:
            os._exit(0)
        os.write(w, f"{gc}\\n".encode())
        os._exit(0)
    os.waitpid(mid, 0)  # the app reaps its own children; the grandchildren are orphans
os.close(w)
orphans = [int(x) for x in os.fdopen(r).read().split()]
def exists(pid):
    return os.path.exists(f"/proc/{pid}")
t0 = time.monotonic()
while any(exists(p) for p in orphans) and time.monotonic() - t0 < 5:
    time.sleep(0.005)
took = time.monotonic() - t0
left = [p for p in orphans if exists(p)]
zombies = []
if os.getppid() == 1:  # in the namespace: no zombie at all may remain
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                st = open(f"/proc/{e}/stat", "rb").read()
            except OSError:
                continue
            if st[st.rfind(b")") + 2:].split()[0] == b"Z":
                zombies.append(int(e))
say(f"orphans {len(orphans)} left {len(left)} zombies {len(zombies)} took {took:.3f}")
def switches():  # of waitfor: any wake-up counts as a context switch
    with open(f"/proc/{os.getppid()}/status") as f:
        return " ".join(l.split()[1] for l in f if "ctxt_switches" in l)
before = switches()
time.sleep(1.1)  # a window to measure (longer than tini's 1 s tick), not a synchronisation
say(f"idle {before} / {switches()}")
"""


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "init-subreaper"])
def test_100_orphans_are_reaped_and_the_idle_init_sleeps(pid1):
    w = run([] if pid1 else ["--init"], app(ORPHANS_APP, 100), pid1=pid1)
    assert w.returncode == 0, w.err
    lines = w.report_lines
    assert lines and lines[0].startswith("orphans 100 left 0 zombies 0"), (lines, w.err)
    took = float(lines[0].split()[-1])
    assert took < 2, "zombies must be reaped promptly"
    before, after = lines[1][len("idle "):].split(" / ")
    assert before == after, f"the idle init woke up (voluntary, involuntary switches): {lines[1]}"


SUBREAPER_APP = PROLOGUE + """
r, w = os.pipe()
mid = os.fork()
if mid == 0:
    gc = os.fork()
    if gc == 0:
        os.close(w)
        os.read(r, 1)  # until the app closes the pipe
        os._exit(0)
    say(f"gc {gc}")
    os._exit(0)
os.close(r)
os.waitpid(mid, 0)
def stat(pid):
    try:
        st = open(f"/proc/{pid}/stat", "rb").read()
    except OSError:
        return None
    return st[st.rfind(b")") + 2:].split()
deadline = time.monotonic() + 5
gc = None
while gc is None and time.monotonic() < deadline:
    time.sleep(0.002)
    # the grandchild's pid comes over the report pipe too; read it back from /proc
    for e in os.listdir("/proc"):
        if e.isdigit():
            s = stat(int(e))
            if s and int(s[1]) == os.getppid() and int(e) != os.getpid():
                gc = int(e)
say(f"orphan {gc} ppid {int(stat(gc)[1]) if gc else None} waitfor {os.getppid()}")
os.close(w)
while stat(gc) is not None and time.monotonic() < deadline:
    time.sleep(0.002)
say(f"gone {stat(gc) is None}")
"""


def test_init_outside_pid1_is_a_subreaper():
    """--init without a PID namespace: an orphaned grandchild is re-parented to waitfor
    (PR_SET_CHILD_SUBREAPER, prctl(2)), not to the host's init, and waitfor reaps it."""
    w = run(["--init"], app(SUBREAPER_APP), pid1=False)
    assert w.returncode == 0, w.err
    gc_line, orphan, gone = w.report_lines[:3]
    gc = int(gc_line.split()[1])
    assert orphan == f"orphan {gc} ppid {w.proc.pid} waitfor {w.proc.pid}", w.report_lines
    assert gone == "gone True", "the orphan must be reaped by waitfor"


# --------------------------------------------------------------------------- leftovers

LEFTOVERS_APP = PROLOGUE + """
stubborn = sys.argv[1] == "stubborn"
sync_r, sync_w = os.pipe()
def child(ignore_term):
    pid = os.fork()
    if pid:
        return pid
    os.setsid()  # out of the app's group: only a clean-up of every process finds it
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *a: (say(f"term {os.getpid()}"), os._exit(0)))
    say(f"child {os.getpid()} {'stubborn' if ignore_term else 'meek'}")
    os.write(sync_w, b"x")
    while True:
        time.sleep(1)
kids = [child(False)] + ([child(True)] if stubborn else [])
for _ in kids:
    os.read(sync_r, 1)  # each child has set its disposition
say("main exits")
os._exit(3)
"""


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "init"])
@pytest.mark.parametrize("how", ["flag", "yaml"])
def test_leftovers_get_term_then_kill_after_the_stop_timeout(tmp_path, pid1, how):
    if how == "flag":
        args = ["--stop-timeout", "600ms"]
    else:
        (tmp_path / "c.yaml").write_text("stop_timeout: 600ms\n")
        args = ["-c", str(tmp_path / "c.yaml")]
    with Waitfor(args if pid1 else ["--init"] + args, app(LEFTOVERS_APP, "stubborn"), pid1=pid1) as w:
        lines = [w.report.line(10) for _ in range(3)]
        assert lines[2] == "main exits", (lines, w.err)
        t_main = time.monotonic()
        code = w.wait(15)
        took = time.monotonic() - t_main
        rest = w.report.rest(1)
        kids = {x.split()[2]: int(x.split()[1]) for x in lines if x.startswith("child")}
    assert code == 3, f"the exit code is the app's; stderr: {w.err}"
    assert f"term {kids['meek']}" in rest, "a process left behind gets SIGTERM"
    assert 0.5 <= took < 3, f"SIGKILL comes after the 600ms grace, not before or much after: {took:.2f}s"
    if not pid1:  # outside a namespace nothing else kills them: waitfor must have
        assert not any(alive(p) for p in kids.values()), "the stubborn one must be SIGKILLed"


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "init"])
def test_leftovers_that_obey_term_end_waitfor_without_the_grace(pid1):
    with Waitfor(["--stop-timeout", "10s"] if pid1 else ["--init", "--stop-timeout", "10s"],
                 app(LEFTOVERS_APP, "meek"), pid1=pid1) as w:
        lines = [w.report.line(10) for _ in range(2)]
        assert lines[1] == "main exits", (lines, w.err)
        t_main = time.monotonic()
        assert w.wait(15) == 3, w.err
        assert time.monotonic() - t_main < 3
        assert any(x.startswith("term ") for x in w.report.rest(1))


TERM_COUNT_APP = PROLOGUE + """
sync_r, sync_w = os.pipe()
def child(name, linger, own_session=True):
    if os.fork():
        return
    if own_session:
        os.setsid()
    def on_term(*_):
        say(f"term {name}")
        if not linger:
            os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
    os.write(sync_w, b"x")
    time.sleep(10)  # until SIGKILL: the handler returns to the sleep (PEP 475)
    os._exit(0)
child("slow", True)
child("slow-in-group", True, own_session=False)
for i in range(3):
    child(f"quick{i}", False)
for _ in range(5):
    os.read(sync_r, 1)
say("main exits")
os._exit(0)
"""


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "init"])
def test_leftovers_get_sigterm_once(pid1):
    """Many programs take a second SIGTERM as "stop now, skip the clean shutdown": while
    the others exit during the grace, one that takes its time must not get SIGTERM again."""
    args = ["--stop-timeout", "700ms"]
    with Waitfor(args if pid1 else ["--init"] + args, app(TERM_COUNT_APP), pid1=pid1) as w:
        assert w.report.until(lambda line: line == "main exits", 10), w.err
        w.wait(15)
        terms = [line for line in w.report.rest(1) if line.startswith("term")]
    assert sorted(terms) == ["term quick0", "term quick1", "term quick2", "term slow", "term slow-in-group"]


# --------------------------------------------------------------------------- exit codes


def test_exit_codes_0_to_255_pass_through():
    def one(code):
        r = waitfor("-q", "--", "sh", "-c", f"exit {code}", prefix=NS, text=False, timeout=30, start_new_session=True)
        return code, r.returncode

    wrong = [(c, got) for c, got in parallel(one, range(256)) if c != got]
    assert not wrong, f"(app's code, waitfor's) {wrong[:10]}"


SUICIDE_APP = PROLOGUE + """
import ctypes
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no core file
n = int(sys.argv[1])
if n != signal.SIGKILL:
    signal.signal(n, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_UNBLOCK, [n])
os.kill(os.getpid(), n)
time.sleep(5)
"""

DEADLY = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGABRT, signal.SIGKILL, signal.SIGUSR1,
          signal.SIGSEGV, signal.SIGUSR2, signal.SIGPIPE, signal.SIGALRM, signal.SIGTERM, RTMIN, RTMIN + 5,
          int(signal.SIGRTMAX)]


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "init"])
def test_app_killed_by_signal_n_gives_128_plus_n(pid1):
    def one(s):
        r = waitfor(*([] if pid1 else ["--init"]), "--", *app(SUICIDE_APP, int(s)), prefix=NS if pid1 else (),
                    text=False, timeout=30, start_new_session=True, env=dict(os.environ, REPORT_FD="2"))
        return s, r.returncode, r.stderr.decode(errors="replace")[-300:]

    wrong = [(sig_name(s), got, err) for s, got, err in parallel(one, DEADLY) if got != 128 + s]
    assert not wrong


def test_success_exit_maps_codes_to_zero():
    def one(code):
        r = waitfor("--success-exit", "3", "--success-exit", "143", "--",
                    "sh", "-c", f"exit {code}" if code != 143 else "kill $$", prefix=NS, text=False, timeout=30)
        return r.returncode

    assert parallel(one, [3, 143, 4, 0]) == [0, 0, 4, 0]


@pytest.mark.parametrize("mode", ["pid1", "exec", "init"])
def test_cannot_start_gives_127_or_126_with_a_message(tmp_path, mode):
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\necho no\n")
    cases = [(str(tmp_path / "missing"), 127, "not found"), ("no-such-command-xyz", 127, "not found"),
             (str(plain), 126, "cannot execute"), (str(tmp_path), 126, "cannot execute")]
    for cmd, code, what in cases:
        args = ["--init"] if mode == "init" else []
        w = run(args, [cmd, "arg"], pid1=mode == "pid1")
        assert w.returncode == code, (cmd, w.err)
        assert what in w.err and os.path.basename(cmd) in w.err, w.err
        assert w.out == "", "nothing on stdout"


# --------------------------------------------------------------------------- job control

JOB_APP = PROLOGUE + """
def on_cont(*_):
    say(f"cont fg={os.tcgetpgrp(0) == os.getpgrp()}")
signal.signal(signal.SIGCONT, on_cont)
say(f"ready fg={os.tcgetpgrp(0) == os.getpgrp()}")
while True:
    signal.pause()
"""


class Terminal:
    """An interactive bash on a pty, as a person at a terminal would drive it."""

    def __init__(self, env):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(["bash", "--norc", "--noprofile", "-i"], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, pass_fds=(int(env["REPORT_FD"]),),
                                     start_new_session=True, preexec_fn=controlling_tty)
        os.close(slave)
        self.screen, self.pos = "", 0

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def expect(self, text: str, timeout=10.0) -> None:
        """Wait until text shows on the screen after what earlier expects matched."""
        import select

        deadline = time.monotonic() + timeout
        while text not in self.screen[self.pos:]:
            left = deadline - time.monotonic()
            ready = select.select([self.master], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                raise AssertionError(f"{text!r} not on the terminal; it shows: {self.screen[-600:]!r}")
            try:
                self.screen += os.read(self.master, 65536).decode(errors="replace")
            except OSError:  # EIO: bash is gone
                raise AssertionError(f"{text!r} not on the terminal; bash exited: {self.screen[-600:]!r}") from None
        self.pos = self.screen.index(text, self.pos) + len(text)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


@without_namespace
def test_init_under_a_job_control_shell_ctrl_z_fg_bg_ctrl_c():
    """`waitfor --init` run from an interactive shell behaves as the app alone would: ^Z
    stops the job and gives the shell the terminal back, `fg` gives the app the terminal and
    continues it, `bg` continues it in the background (the terminal stays the shell's), ^C
    ends it with 130."""
    r, w = os.pipe()
    env = repo_env(REPORT_FD=str(w), PS1="prompt$ ", JOB_APP=JOB_APP, TERM="dumb")
    term = Terminal(env)
    os.close(w)
    report = Lines(r)
    try:
        term.expect("prompt$")
        cmd = " ".join(WAITFOR) + f' --init -- {WAITFOR[0]} -I -S -c "$JOB_APP"'
        term.type(cmd.encode() + b"\n")
        assert report.line(10) == "ready fg=True", (report.seen, term.screen[-600:])
        term.type(b"\x1a")  # ^Z
        term.expect("Stopped")
        term.type(b"echo shell-has-the-terminal\n")
        term.expect("shell-has-the-terminal", 5)
        term.type(b"fg\n")
        assert report.line(5) == "cont fg=True", report.seen
        term.type(b"\x1a")
        term.expect("Stopped")
        term.type(b"bg\n")
        assert report.line(5) == "cont fg=False", "after bg the app must run in the background"
        term.type(b"echo still-the-shells\n")
        term.expect("still-the-shells", 5)
        # `fg` of a job that runs sends no signal (bash only gives the job's group, waitfor's,
        # the terminal), so waitfor cannot pass the terminal on: ^C then reaches waitfor,
        # which forwards it to the app. (An app that reads the terminal after bg + fg gets
        # SIGTTIN: a known limit, as with tini.)
        term.type(b"fg\n")
        deadline = time.monotonic() + 5  # until bash has given the job the terminal
        while os.tcgetpgrp(term.master) == term.proc.pid and time.monotonic() < deadline:
            time.sleep(0.005)
        term.type(b"\x03")  # ^C
        term.type(b"echo rc=$?\n")
        term.expect("rc=130")
        assert report.rest(1) == [], "one SIGCONT for each fg or bg, no more"
    finally:
        term.close()
        os.close(r)


@without_namespace
def test_the_terminal_comes_back_when_the_app_ends():
    """A script without job control (`sh -c`) that runs `waitfor --init -- app` and then
    reads the terminal must find its group in the foreground again, as without waitfor."""
    master, slave = pty.openpty()
    check = PY + """ -I -S -c 'import os; print("fg", os.tcgetpgrp(0) == os.getpgrp())'"""
    try:
        r = subprocess.run(["sh", "-c", " ".join(WAITFOR) + f" --init -- true && {check}"], stdin=slave,
                           capture_output=True, timeout=20, start_new_session=True, preexec_fn=controlling_tty,
                           env=repo_env())
    finally:
        os.close(master)
        os.close(slave)
    assert r.stdout.decode() == "fg True\n", r
