"""Issue 11 item 1: `--user USER[:GROUP]` (gosu/su-exec in waitfor). Black-box, as root,
as PID 1 of a PID namespace (the lean supervisor) and in exec mode: the app's real,
effective, saved and filesystem ids and its groups, read from /proc/PID/status; signals
still forwarded and orphans still reaped once the supervisor itself has dropped root.

The apps run as nobody, who cannot read the test interpreter under /root: they run the
system's /usr/bin/python3 (world-readable) or sh.
"""

import ast
import grp
import os
import pwd
import signal
import subprocess
import time

import pytest

from helpers.pid1 import NS, PROLOGUE, REPO, WAITFOR, Waitfor, pid_namespace_unavailable

pytestmark = pytest.mark.pid1

SYS_PY = "/usr/bin/python3"
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture(autouse=True)
def _need_root_and_namespace():
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    reason = pid_namespace_unavailable()
    if reason:
        pytest.skip(reason)
    if not os.access(SYS_PY, os.X_OK):
        pytest.skip(f"{SYS_PY} (an interpreter nobody may run) is not installed")


def sys_app(source, *args):
    return [SYS_PY, "-I", "-S", "-c", source, *map(str, args)]


def ids(status_text):
    """{'Uid': [real, effective, saved, fs], 'Gid': [...], 'Groups': [...]} of /proc/PID/status."""
    out = {}
    for line in status_text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            out[key] = [int(x) for x in rest.split()]
    return out


# The app reports its own ids and its parent's (the supervisor's, or nothing in exec mode).
IDS_APP = PROLOGUE + """
say("app " + repr(open("/proc/self/status").read()))
say("parent " + repr(open(f"/proc/{os.getppid()}/status").read()))
say("home " + os.environ.get("HOME", "-"))
say(f"pid {os.getpid()}")
"""


def run_ids(args, pid1=True, env=None):
    with Waitfor(args, sys_app(IDS_APP), pid1=pid1, env=env) as w:
        code = w.wait(20)
        lines = dict(line.split(" ", 1) for line in w.report.rest(1))
        assert code == 0, w.err
        return w, ids(ast.literal_eval(lines["app"])), ids(ast.literal_eval(lines["parent"])), lines["home"], int(lines["pid"])


@pytest.mark.parametrize("spec", ["nobody", "65534"])
def test_pid1_app_and_supervisor_run_as_the_user_with_its_groups(spec):
    _, app, sup, home, _ = run_ids(["--user", spec], env={"HOME": "/root"})
    u, g = NOBODY.pw_uid, NOBODY.pw_gid
    assert app["Uid"] == [u] * 4 and app["Gid"] == [g] * 4, app
    assert app["Groups"] == sorted(set(os.getgrouplist("nobody", g))), app
    # the lean supervisor (PID 1) dropped root too, once the app ran
    assert sup["Uid"] == [u] * 4 and sup["Gid"] == [g] * 4, sup
    assert home == NOBODY.pw_dir, "root's HOME is replaced by the user's"


def test_group_given_means_no_supplementary_groups_and_own_home_kept():
    _, app, _, home, _ = run_ids(["--user", "nobody:daemon"], env={"HOME": "/srv/app"})
    assert app["Uid"] == [NOBODY.pw_uid] * 4
    assert app["Gid"] == [grp.getgrnam("daemon").gr_gid] * 4
    assert app["Groups"] == []
    assert home == "/srv/app", "a HOME of the user's own choosing is kept"


def test_supplementary_groups_from_the_group_database():
    """initgroups(3): a user who is a member of other groups gets them (gosu does)."""
    members = [(gr.gr_name, m) for gr in grp.getgrall() for m in gr.gr_mem]
    if not members:
        pytest.skip("no user here is a member of a supplementary group")
    group, user = members[0]
    pw = pwd.getpwnam(user)
    _, app, _, _, _ = run_ids(["--user", user], env={"WAITFOR_USER": ""})
    assert app["Uid"] == [pw.pw_uid] * 4
    assert grp.getgrnam(group).gr_gid in app["Groups"], app


def test_exec_mode_switches_before_execve():
    w, app, _, _, pid = run_ids([], pid1=False, env={"WAITFOR_USER": "nobody"})
    assert pid == w.proc.pid, "exec mode: the app is waitfor's own process"
    assert app["Uid"] == [NOBODY.pw_uid] * 4 and app["Gid"] == [NOBODY.pw_gid] * 4


def test_yaml_user_key(tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text("user: nobody\n")
    _, app, _, _, _ = run_ids(["-c", str(cfg), "--init"], pid1=False)
    assert app["Uid"] == [NOBODY.pw_uid] * 4


SIG_APP = PROLOGUE + """
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGTERM])
say(f"ready {os.getpid()} {os.getuid()}")
for _ in range(2):
    info = signal.sigwaitinfo([signal.SIGUSR1, signal.SIGTERM])
    say(f"sig {info.si_signo} {info.si_pid}")
os._exit(3)
"""


def test_signals_still_forwarded_by_the_dropped_supervisor():
    with Waitfor(["--user", "nobody"], sys_app(SIG_APP)) as w:
        ready = w.report.line()
        assert ready and ready.split()[2] == str(NOBODY.pw_uid), (ready, w.err)
        for s in (signal.SIGUSR1, signal.SIGTERM):
            w.kill(s)
            line = w.report.line(5)
            assert line == f"sig {int(s)} 1", (line, w.err)
        assert w.wait(10) == 3, w.err


ORPHANS_APP = PROLOGUE + """
kids = []
for _ in range(20):
    mid = os.fork()
    if mid == 0:
        gc = os.fork()
        if gc == 0:
            os._exit(0)
        os.write(REPORT, f"gc {gc}\\n".encode())
        os._exit(0)
    os.waitpid(mid, 0)
t0 = time.monotonic()
def zombies():
    n = 0
    for e in os.listdir("/proc"):
        if e.isdigit() and e != str(os.getpid()):
            try:
                st = open(f"/proc/{e}/stat", "rb").read()
            except OSError:
                continue
            n += st[st.rfind(b")") + 2:].split()[0] == b"Z"
    return n
while zombies() and time.monotonic() - t0 < 5:
    time.sleep(0.01)
say(f"zombies {zombies()}")
# a child left behind: the supervisor, now nobody, must still stop it (SIGTERM). The app
# exits only once the child's handler is in place: else the SIGTERM may come first.
ready_r, ready_w = os.pipe()
if os.fork() == 0:
    signal.signal(signal.SIGTERM, lambda *a: (say("left TERM"), os._exit(0)))
    say("left ready")
    os.write(ready_w, b".")
    time.sleep(30)
    os._exit(1)
os.read(ready_r, 1)
"""


def test_orphans_reaped_and_leftovers_stopped_as_the_user():
    with Waitfor(["--user", "nobody", "--stop-timeout", "5s"], sys_app(ORPHANS_APP)) as w:
        t0 = time.monotonic()
        assert w.wait(20) == 0, w.err
        lines = [x for x in w.report.rest(1) if not x.startswith("gc ")]
        assert "zombies 0" in lines, lines
        assert "left TERM" in lines, (lines, w.err)
        assert time.monotonic() - t0 < 5, "the leftover took TERM, not the SIGKILL after the grace"


def _quick(args, env=None, user=None):
    """waitfor as a plain process (optionally as `user`, with the system interpreter)."""
    pre = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user is not None else []
    py = [SYS_PY, "-m", "waitfor"] if user is not None else WAITFOR
    t0 = time.monotonic()
    r = subprocess.run(pre + py + args, capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, PYTHONPATH=REPO, **(env or {})))
    return r, time.monotonic() - t0


def test_unknown_user_or_group_is_exit_2_before_waiting():
    # a closed port and a 30 s deadline: the error must come first
    for spec, word in (("no-such-user", "unknown user 'no-such-user'"), ("nobody:no-such-group", "unknown group")):
        r, took = _quick(["-t", "30s", "tcp://127.0.0.1:1", "--user", spec, "--", "true"])
        assert r.returncode == 2 and word in r.stderr and took < 10, (r.stderr, took)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r, _ = _quick(["--", "true"], env={"WAITFOR_USER": "nobody:"})
    assert r.returncode == 2 and "WAITFOR_USER" in r.stderr, r.stderr


def test_not_root_cannot_switch_but_may_switch_to_itself():
    if subprocess.run(["setpriv", "--help"], capture_output=True).returncode != 0:
        pytest.skip("setpriv(1) is not installed")
    r, took = _quick(["-t", "30s", "tcp://127.0.0.1:1", "--user", "root", "--", "true"], user=65534)
    assert r.returncode == 2 and "not root, cannot switch user" in r.stderr and took < 10, r.stderr
    r, _ = _quick(["--user", "nobody", "--", "id", "-u"], user=65534)
    assert r.returncode == 0 and r.stdout.strip() == "65534", r.stderr


def test_pid1_namespace_runs_it_with_unshare():
    # the same as above, from the NS prefix: keeps the import of NS honest
    r = subprocess.run(NS + WAITFOR + ["--user", "nobody", "--", "id", "-u"], capture_output=True, text=True,
                       timeout=20, env=dict(os.environ, PYTHONPATH=REPO))
    assert r.returncode == 0 and r.stdout.strip() == str(NOBODY.pw_uid), r.stderr


def test_in_process_supervisor_keeps_root_and_the_app_switches(tmp_path):
    """With --probe-addr the supervisor stays in the full interpreter and keeps root (the
    state file, the watch); only the app runs as the user."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = {"WAITFOR_STATE_FILE": str(tmp_path / "state.json")}
    _, app, sup, _, _ = run_ids(["--user", "nobody", "--probe-addr", f"127.0.0.1:{port}"], env=env)
    assert app["Uid"] == [NOBODY.pw_uid] * 4 and app["Gid"] == [NOBODY.pw_gid] * 4, app
    assert sup["Uid"] == [0] * 4, "the in-process supervisor stays root (README: which modes keep root)"


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "exec"])
def test_a_switch_the_kernel_refuses_is_one_line_exit_70_not_an_exec_failure(pid1):
    """Root of a user namespace that maps only itself (rootless containers): setgroups and
    setuid to nobody fail; that is said as such, not as `cannot execute` (126)."""
    ns = ["unshare", "--user", "--map-root-user"] + (["--pid", "--fork", "--mount-proc"] if pid1 else [])
    r = subprocess.run(ns + WAITFOR + ["--user", "nobody", "--", "true"], capture_output=True, text=True,
                       timeout=20, env=dict(os.environ, PYTHONPATH=REPO))
    if r.returncode != 70 and "unshare" in r.stderr:
        pytest.skip(f"no user namespaces here: {r.stderr.strip()}")
    assert r.returncode == 70, r.stderr
    assert r.stderr.strip() == "waitfor: error: --user: cannot switch to uid 65534, gid 65534: Operation not permitted"


@pytest.mark.parametrize("spec, words", [
    ("١٢٣", "unknown user '١٢٣'"),          # Arabic-Indic digits: a name, not uid 123
    ("²", "unknown user '²'"),              # was a Python message (int() of a superscript)
    ("nobody:١٢٣", "unknown group '١٢٣'"),
    ("nobody:²", "unknown group '²'"),
    ("99999999999", "id out of range"),
])
def test_only_ascii_digits_are_ids(spec, words):
    r, _ = _quick(["--user", spec, "--", "true"])
    assert r.returncode == 2 and r.stderr == f"waitfor: error: --user: {words}" + (
        " (not in the password database)\n" if "user '" in words else
        " (not in the group database)\n" if "group '" in words else f" in {spec!r}\n"), r.stderr


def test_a_numeric_group_is_a_gid_first_as_su_exec_and_gosu_take_it(tmp_path):
    """A group named 4321 (gid 5000) in the group database: `nobody:4321` is gid 4321, as
    su-exec (strtol first) and gosu (runc: "if the groupArg is numeric, always treat it as
    a GID") take it. The group file is replaced in a private mount namespace only."""
    group = tmp_path / "group"
    group.write_text(open("/etc/group").read() + "4321:x:5000:\n")
    script = f'mount --bind {group} /etc/group && exec "$@"'
    r = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", *WAITFOR, "--user", "nobody:4321", "--",
                        "id", "-g"], capture_output=True, text=True, timeout=20, env=dict(os.environ, PYTHONPATH=REPO))
    if r.returncode != 0 and "mount" in r.stderr:
        pytest.skip(f"cannot mount here: {r.stderr}")
    assert r.returncode == 0 and r.stdout.strip() == "4321", r.stderr


def test_not_root_from_the_config_file_is_located_at_its_line():
    if subprocess.run(["setpriv", "--help"], capture_output=True).returncode != 0:
        pytest.skip("setpriv(1) is not installed")
    import tempfile

    folder = tempfile.mkdtemp(dir="/tmp")  # pytest's tmp_path is root-only
    os.chmod(folder, 0o755)
    cfg = os.path.join(folder, "w.yaml")
    with open(cfg, "w") as f:
        f.write("timeout: 5s\nuser: root\n")
    os.chmod(cfg, 0o644)
    try:
        r, _ = _quick(["-c", cfg, "--", "true"], user=65534)
    finally:
        os.unlink(cfg)
        os.rmdir(folder)
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"waitfor: error: {cfg}:2: user: not root, cannot switch user (waitfor runs as uid 65534)\n"
    r, _ = _quick(["--", "true"], env={"WAITFOR_USER": "root"}, user=65534)
    assert r.stderr.startswith("waitfor: error: WAITFOR_USER: not root, cannot switch user"), r.stderr
