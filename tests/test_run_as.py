"""`--user USER[:GROUP]` (gosu/su-exec in waitfor). Black-box, as root,
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

from helpers.core import REPO, WAITFOR, repo_env, waitfor
from helpers.pid1 import NS, PROLOGUE, Waitfor, alive, pid_namespace_unavailable

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
                       env=repo_env(**(env or {})))
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
    r = waitfor("--user", "nobody", "--", "id", "-u", prefix=NS, timeout=20, env=repo_env())
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
    r = waitfor("--user", "nobody", "--", "true", prefix=ns, timeout=20, env=repo_env())
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
    r = waitfor("--user", "nobody:4321", "--", "id", "-g", prefix=["unshare", "--mount", "sh", "-c", script, "sh"],
                timeout=20, env=repo_env())
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


# --- once the app runs as USER, no program waitfor starts runs as root -----

# The app (as USER) rewrites the watched check script, as a hostile app would, then waits
# for the watch to run it: the next run must be USER's (ids, groups, HOME, capabilities).
REWRITE_APP = PROLOGUE + """
d = sys.argv[1]
with open(d + "/check.sh.new", "w") as f:
    f.write("#!/bin/sh\\n(id -u; id -g; id -G; echo $HOME; grep -E '^Cap(Eff|Prm)' /proc/self/status)"
            " > " + d + "/ran.tmp && mv " + d + "/ran.tmp " + d + "/ran\\n")
os.chmod(d + "/check.sh.new", 0o755)
os.rename(d + "/check.sh.new", d + "/check.sh")
t0 = time.monotonic()
while not os.path.exists(d + "/ran") and time.monotonic() - t0 < 10:
    time.sleep(0.05)
say("ran " + repr(open(d + "/ran").read() if os.path.exists(d + "/ran") else None))
"""


@pytest.fixture
def user_dir():
    """A folder USER owns, that USER can reach (pytest's tmp_path is root's, mode 0700)."""
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="waitfor-as-user-", dir="/tmp")
    os.chmod(d, 0o755)
    os.chown(d, NOBODY.pw_uid, NOBODY.pw_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)  # the app may rewrite it: that is the attack


def _check_ids(text):
    lines = text.splitlines()
    caps = {k: int(v, 16) for k, v in (line.split(":") for line in lines[4:])}
    return int(lines[0]), int(lines[1]), sorted(map(int, lines[2].split())), lines[3], caps


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "init-subreaper"])
def test_command_checks_run_as_the_user_after_the_app_rewrote_them(user_dir, pid1):
    d = user_dir
    _script(f"{d}/check.sh", "exit 0")
    # a command dependency of the wait too: the writable layer outlives a restart, so a
    # script the app rewrote in its previous run must not run as root in the next wait
    _script(f"{d}/dep.sh", f"id -u > {d}/dep-ran")
    cfg = f"{d}/w.yaml"
    with open(cfg, "w") as f:
        f.write(f"user: nobody\ndependencies:\n  - command: [{d}/dep.sh]\n"
                f"health:\n  - command: [{d}/check.sh]\nwatch: {{interval: 100ms, failure_threshold: 1000}}\n")
    env = {"HOME": "/root", "WAITFOR_STATE_FILE": f"{d}/state.json"}
    args = ["-c", cfg] + ([] if pid1 else ["--init"])
    with Waitfor(args, sys_app(REWRITE_APP, d), pid1=pid1, env=env) as w:
        line = w.report.line(20)
        assert w.wait(20) == 0, w.err
    assert line and line.startswith("ran "), (line, w.err)
    ran = ast.literal_eval(line[4:])
    assert ran is not None, f"the rewritten check never ran: {w.err}"
    uid, gid, groups, home, caps = _check_ids(ran)
    assert (uid, gid) == (NOBODY.pw_uid, NOBODY.pw_gid), ran
    assert groups == sorted(set(os.getgrouplist("nobody", NOBODY.pw_gid))), ran
    assert home == NOBODY.pw_dir, "the check gets the HOME the app gets"
    assert caps == {"CapEff": 0, "CapPrm": 0}, ran
    with open(f"{d}/dep-ran") as f:
        assert f.read().strip() == str(NOBODY.pw_uid)


def test_a_check_the_user_may_not_run_is_a_failed_check_not_a_root_run(user_dir):
    """A check only root may execute fails as the user would see it (permission denied)."""
    path = f"{user_dir}/root-only.sh"
    _script(path, "exit 0")
    os.chown(path, 0, 0)
    os.chmod(path, 0o700)
    with open(f"{user_dir}/w.yaml", "w") as f:
        f.write(f"dependencies:\n  - command: [{path}]\n")
    r = subprocess.run(NS + WAITFOR + ["-t", "5s", "--user", "nobody", "-c", f"{user_dir}/w.yaml", "--", "true"],
                       capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=REPO))
    assert r.returncode == 124 and f"{path}: permission denied" in r.stderr, r.stderr


# --- a process of the app that regains root can still be signalled --------

SETUID_ROOT_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
/* as sudo or su do once they are allowed: become fully root, then run argv[1:] */
int main(int argc, char **argv) {
    if (argc < 2 || setresuid(0, 0, 0) != 0 || setresgid(0, 0, 0) != 0) { perror("setresuid"); return 1; }
    execv(argv[1], argv + 1);
    perror("execv");
    return 127;
}
"""


@pytest.fixture
def setuid_root(user_dir):
    """A set-user-ID-root helper that USER may run: `helper PROGRAM ARGS` runs PROGRAM with
    real, effective and saved uid 0. Compiled here with gcc."""
    import shutil

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (needed to build a set-user-ID helper)")
    if os.statvfs(user_dir).f_flag & os.ST_NOSUID:
        pytest.skip(f"{user_dir} is on a nosuid mount: a set-user-ID helper cannot work there")
    src, helper = f"{user_dir}/rootly.c", f"{user_dir}/rootly"
    with open(src, "w") as f:
        f.write(SETUID_ROOT_C)
    r = subprocess.run(["gcc", "-O2", "-o", helper, src], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"gcc failed: {r.stderr.strip()[:200]}")
    os.chown(helper, 0, 0)
    os.chmod(helper, 0o4755)
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", helper, "/usr/bin/id", "-u"],
                           capture_output=True, text=True, timeout=10)
    if probe.returncode != 0 or probe.stdout.strip() != "0":
        pytest.skip(f"a set-user-ID program does not get root here: {probe.stdout}{probe.stderr}")
    return helper


def caps(status_text):
    return {k: int(v, 16) for k, v in (line.split(":") for line in status_text.splitlines()
                                        if line.split(":")[0] in ("CapInh", "CapPrm", "CapEff", "CapAmb"))}


CAP_KILL = 1 << 5

# As root again: reports its uid and pid, says TERM when it gets SIGTERM, and exits 0.
ROOT_TERM = PROLOGUE + """
signal.signal(signal.SIGTERM, lambda *a: (say("TERM"), os._exit(0)))
say(f"root {os.getuid()} {os.getpid()} " + repr(open(f"/proc/{os.getppid()}/status").read()))
time.sleep(30)
os._exit(1)
"""


def test_docker_stop_reaches_an_app_that_became_root_and_the_supervisor_keeps_only_cap_kill(setuid_root):
    """`docker stop` is a SIGTERM to PID 1: it must reach the app although the app is root
    again and the supervisor is not. The supervisor keeps CAP_KILL and nothing else."""
    with Waitfor(["--user", "nobody", "--stop-timeout", "20s"], [setuid_root] + sys_app(ROOT_TERM)) as w:
        line = w.report.line(20)
        assert line and line.startswith("root 0 "), (line, w.err)
        sup = line.split(" ", 3)[3]
        assert ids(ast.literal_eval(sup))["Uid"] == [NOBODY.pw_uid] * 4
        assert caps(ast.literal_eval(sup)) == {"CapInh": 0, "CapPrm": CAP_KILL, "CapEff": CAP_KILL, "CapAmb": 0}
        w.kill(signal.SIGTERM)
        assert w.report.line(10) == "TERM", w.err
        assert w.wait(10) == 0, w.err
        assert "not permitted" not in w.err


def test_the_app_gets_no_capability_from_the_supervisor_that_keeps_one():
    with Waitfor(["--user", "nobody"], sys_app(IDS_APP)) as w:
        assert w.wait(20) == 0, w.err
        lines = dict(line.split(" ", 1) for line in w.report.rest(1))
    assert caps(ast.literal_eval(lines["app"])) == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapAmb": 0}
    assert caps(ast.literal_eval(lines["parent"]))["CapEff"] == CAP_KILL


# The app (USER) leaves a root leftover that ignores SIGTERM, then exits.
ROOT_LEFTOVER = PROLOGUE + """
signal.signal(signal.SIGTERM, signal.SIG_IGN)
say(f"left {os.getuid()} {os.getpid()}")
time.sleep(60)
"""
LEAVES_ROOT = PROLOGUE + """
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
time.sleep(0.5)  # long enough for the leftover's SIG_IGN (it reports first; this is a bound)
"""


def test_init_leaves_no_root_leftover_behind(setuid_root):
    """--init (a subreaper, not PID 1): no namespace to end the rest with waitfor, so the
    SIGKILL after the grace must reach a leftover that is root again."""
    with Waitfor(["--init", "--user", "nobody", "--stop-timeout", "1s"],
                 sys_app(LEAVES_ROOT, setuid_root, *sys_app(ROOT_LEFTOVER)), pid1=False) as w:
        line = w.report.line(20)
        assert line and line.startswith("left 0 "), (line, w.err)
        leftover = int(line.split()[2])
        try:
            assert w.wait(20) == 0, w.err
            deadline = time.monotonic() + 2
            while alive(leftover) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not alive(leftover), f"a root leftover survived waitfor: {w.err}"
            assert "sending SIGKILL" in w.err, w.err
        finally:
            try:
                os.kill(leftover, signal.SIGKILL)
            except OSError:
                pass


def test_a_signal_the_kernel_refuses_is_said_once_naming_the_pid(setuid_root):
    """waitfor itself not root (USER nobody in the image): it cannot keep any capability,
    and a SIGTERM for an app that is root again is refused. Said once, with the pid."""
    env = dict(os.environ, PYTHONPATH=REPO)
    r, wfd = os.pipe()
    env["REPORT_FD"] = str(wfd)
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYS_PY, "-m", "waitfor", "--init", "--",
            setuid_root, *sys_app(ROOT_TERM)]
    p = subprocess.Popen(argv, env=env, pass_fds=(wfd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    os.close(wfd)
    from helpers.pid1 import Lines

    report, app = Lines(r), None
    try:
        line = report.line(20)
        assert line and line.startswith("root 0 "), line
        app = int(line.split()[2])
        for _ in range(2):
            os.kill(p.pid, signal.SIGTERM)
        err = Lines(p.stderr.fileno())
        said = err.until(lambda x: "not permitted" in x, 10)
        assert said == f"waitfor: cannot signal pid {app}: not permitted (it runs as another user, such as root " \
                       "again through a set-user-ID program)", said
        assert err.line(1) is None, "said once"
    finally:
        for pid in (app, p.pid):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        p.wait(10)
        p.stderr.close()
        os.close(r)


@pytest.mark.parametrize("mode", ["health", "check"])
def test_health_and_check_run_as_root_give_command_checks_the_configs_user(user_dir, mode):
    """`HEALTHCHECK CMD waitfor health` runs as the container's user: root, when waitfor is
    the one that switches. A check the app may rewrite still runs as USER."""
    d = user_dir
    _script(f"{d}/check.sh", f"id -u > {d}/ran")
    with open(f"{d}/w.yaml", "w") as f:
        f.write(f"user: nobody\ndependencies:\n  - command: [{d}/check.sh]\n")
    r = subprocess.run(WAITFOR + [mode, "-c", f"{d}/w.yaml"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PYTHONPATH=REPO, WAITFOR_STATE_FILE=f"{d}/none.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    with open(f"{d}/ran") as f:
        assert f.read().strip() == str(NOBODY.pw_uid)


# The app tries to reach into its supervisor, which holds CAP_KILL and has the app's uid:
# its memory (what ptrace would give) and its environment. The kernel refuses both: the
# supervisor holds a capability the app lacks, and it is not dumpable after its set*id.
INTO_SUPERVISOR = PROLOGUE + """
for what in ("mem", "environ"):
    try:
        open(f"/proc/{os.getppid()}/{what}", "rb").read(1)
        say(f"{what} open")
    except OSError as e:
        say(f"{what} {e.errno}")
"""


def test_the_app_cannot_reach_into_the_supervisor_that_keeps_cap_kill():
    import errno

    with Waitfor(["--user", "nobody"], sys_app(INTO_SUPERVISOR)) as w:
        assert w.wait(20) == 0, w.err
        lines = w.report.rest(1)
    assert lines == [f"mem {errno.EACCES}", f"environ {errno.EACCES}"], lines


def test_without_cap_kill_to_keep_the_supervisor_says_so_once_and_keeps_nothing():
    """`docker run --cap-drop KILL`: root without CAP_KILL in its bounding set. The drop
    goes on with no capability at all, and says so in one line."""
    if subprocess.run(["setpriv", "--bounding-set=-kill", "true"], capture_output=True).returncode != 0:
        pytest.skip("setpriv --bounding-set is not available")
    with Waitfor(["--user", "nobody"], sys_app(IDS_APP), prefix=["setpriv", "--bounding-set=-kill"]) as w:
        assert w.wait(20) == 0, w.err
        lines = dict(line.split(" ", 1) for line in w.report.rest(1))
    assert caps(ast.literal_eval(lines["parent"])) == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapAmb": 0}
    assert w.err.strip() == ("waitfor: --user: the kernel did not let waitfor keep CAP_KILL: a process of the app "
                             "that becomes root again cannot be signalled"), w.err


ROOT_STUBBORN = PROLOGUE + """
signal.signal(signal.SIGTERM, signal.SIG_IGN)
say(f"root {os.getuid()} {os.getpid()}")
time.sleep(60)
"""


def test_a_lost_dependency_does_not_hang_on_an_app_the_supervisor_may_not_kill(setuid_root, user_dir):
    """waitfor not root (USER nobody in the image), a runtime watch, and an app that is root
    again: when the watch loses the dependency, neither the stop signal nor SIGKILL may
    reach the app. Said so; waitfor exits 69 after the grace instead of waiting for ever."""
    import socket

    from helpers.pid1 import Lines

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    r, wfd = os.pipe()
    env = dict(os.environ, PYTHONPATH=REPO, REPORT_FD=str(wfd), WAITFOR_STATE_FILE=f"{user_dir}/state.json")
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYS_PY, "-m", "waitfor",
            "--watch-interval", "100ms", "--failure-threshold", "1", "--stop-timeout", "1s", f"tcp://127.0.0.1:{port}",
            "--", setuid_root, *sys_app(ROOT_STUBBORN)]
    p = subprocess.Popen(argv, env=env, pass_fds=(wfd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    os.close(wfd)
    report, app = Lines(r), None
    try:
        line = report.line(20)
        assert line and line.startswith("root 0 "), line
        app = int(line.split()[2])
        srv.close()  # the dependency is lost
        assert p.wait(30) == 69
        # not communicate(): the app, still running, holds waitfor's stderr open
        err_lines = Lines(p.stderr.fileno())
        err_lines.until(lambda x: "leaving it behind" in x, 5)
        err = "\n".join(err_lines.seen)
        assert err.count(f"cannot signal pid {app}: not permitted") == 1, err
        assert f"the app (pid {app}) is still running 5s after SIGKILL; leaving it behind" in err, err
        assert alive(app), "the app was not ours to kill"
    finally:
        srv.close()
        for pid in (app, p.pid):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        p.wait(10)
        p.stderr.close()
        os.close(r)
