"""`templates:` / `--template SRC:DEST`, rendered with the config's own
interpolation (waitfor.config.interpolate), checked before the wait, written atomically
after it and before the app. Black-box through the real CLI."""

import os
import pwd
import stat
import subprocess
import time

import pytest

from helpers import core
from helpers.core import REPO, bare_env, spawn

TEMPLATE = "host=${DB_HOST:-localhost}\npass=${DB_PASSWORD:?set DB_PASSWORD}\nprice=$$5\n"


def waitfor(args, env=None, timeout=20, prefix=()):
    """`waitfor ARGS` (after `prefix`) with only PATH, PYTHONPATH and `env` in its environment."""
    return core.waitfor(*args, env=bare_env(**(env or {})), timeout=timeout, prefix=prefix)


@pytest.fixture
def tmpl(tmp_path):
    p = tmp_path / "app.conf.tmpl"
    p.write_text(TEMPLATE)
    return p


def test_rendered_before_the_app_with_the_config_rules(tmpl, tmp_path):
    dest = tmp_path / "out" / "app.conf"
    dest.parent.mkdir()
    r = waitfor(["--template", f"{tmpl}:{dest}", "--", "cat", str(dest)], {"DB_PASSWORD": "pw"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "host=localhost\npass=pw\nprice=$5\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600  # owner-only: it may hold a secret
    assert os.listdir(dest.parent) == ["app.conf"], "no temporary file is left"


def test_yaml_templates_with_mode_and_several_files(tmpl, tmp_path):
    other = tmp_path / "other.tmpl"
    other.write_text("${GREETING}, world\n")
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"templates:\n  - src: {tmpl}\n    dest: {tmp_path}/a.conf\n    mode: 0600\n"
                   f"  - src: {other}\n    dest: {tmp_path}/b.txt\n    mode: '0640'\n")
    r = waitfor(["-c", str(cfg), "--", "cat", f"{tmp_path}/a.conf", f"{tmp_path}/b.txt"],
                {"DB_PASSWORD": "pw", "DB_HOST": "db", "GREETING": "hello"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "host=db\npass=pw\nprice=$5\nhello, world\n"
    assert stat.S_IMODE((tmp_path / "a.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o640


def test_an_existing_file_is_replaced_atomically(tmpl, tmp_path):
    dest = tmp_path / "app.conf"
    dest.write_text("old\n")
    before = dest.stat().st_ino
    with open(dest) as held:  # a reader that opened the old file keeps it whole
        r = waitfor(["--template", f"{tmpl}:{dest}", "--", "true"], {"DB_PASSWORD": "pw"})
        assert r.returncode == 0, r.stderr
        assert held.read() == "old\n"
    assert dest.stat().st_ino != before, "rename(2) of a new file, not a rewrite in place"
    assert dest.read_text().startswith("host=localhost")


def test_missing_required_variable_is_exit_2_before_waiting_and_writes_nothing(tmpl, tmp_path):
    dest = tmp_path / "app.conf"
    dest.write_text("old\n")
    r = waitfor(["--template", f"{tmpl}:{dest}", "-t", "30s", "tcp://127.0.0.1:1", "--", "touch",
                 str(tmp_path / "ran")])
    assert r.returncode == 2 and r.took < 10, (r.stderr, r.took)
    assert f"template {tmpl}:2: required variable DB_PASSWORD is not set: set DB_PASSWORD" in r.stderr
    assert r.stderr.count("\n") == 1
    assert dest.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["app.conf", "app.conf.tmpl"]


def test_bad_sources_and_destinations_are_exit_2(tmpl, tmp_path):
    cases = [
        (f"{tmp_path}/missing.tmpl:{tmp_path}/x", "cannot read it"),
        (f"{tmpl}:{tmp_path}/no/such/folder/x", "does not exist"),
        (f"{tmpl}:{tmp_path}", "it is a folder"),
        (f"{tmpl}", "expected SRC:DEST"),
    ]
    for spec, words in cases:
        r = waitfor(["--template", spec, "-t", "30s", "tcp://127.0.0.1:1", "--", "true"], {"DB_PASSWORD": "pw"})
        assert r.returncode == 2 and words in r.stderr and r.took < 10, (spec, r.stderr)
    bad = tmp_path / "bad.tmpl"
    bad.write_text("a\nb=$-x\n")
    r = waitfor(["--template", f"{bad}:{tmp_path}/x", "--", "true"])
    assert r.returncode == 2 and f"template {bad}:2: bad variable reference" in r.stderr, r.stderr
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"templates:\n  - src: {tmpl}\n    dest: /x\n    mode: rw\n")
    r = waitfor(["-c", str(cfg), "--", "true"])
    assert r.returncode == 2 and "w.yaml:1: templates" in r.stderr and "octal" in r.stderr, r.stderr


def test_written_after_the_wait(tmpl, tmp_path):
    flag, dest = tmp_path / "ready", tmp_path / "app.conf"
    env = bare_env(DB_PASSWORD="pw")
    p = spawn("--template", f"{tmpl}:{dest}", "-t", "20s", f"file://{flag}", "--", "cat", str(dest), env=env,
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert p.poll() is None and not dest.exists(), "written only once the wait is over"
        flag.touch()
        out, err = p.communicate(timeout=20)
    finally:
        p.kill()
    assert p.returncode == 0 and out.startswith("host=localhost"), err


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown and mounts need root")


@needs_root
def test_owned_by_user_when_set(tmpl, tmp_path):
    dest = tmp_path / "app.conf"
    r = waitfor(["--user", "nobody", "--template", f"{tmpl}:{dest}", "--", "true"], {"DB_PASSWORD": "pw"})
    assert r.returncode == 0, r.stderr
    nobody = pwd.getpwnam("nobody")
    assert (dest.stat().st_uid, dest.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)


@needs_root
def test_read_only_root_with_a_writable_tmpfs_destination(tmpl, tmp_path):
    """As a container with readOnlyRootFilesystem and an emptyDir: the temporary file goes
    in the destination's own folder, never in /tmp or next to the template."""
    out = tmp_path / "out"
    out.mkdir()
    script = (f"mount --bind / / && mount -o remount,bind,ro / && mount -t tmpfs tmpfs {out} && "
              f"! touch {tmp_path}/probe 2>/dev/null && exec \"$@\"")
    args = ["--template", f"{tmpl}:{out}/app.conf", "--", "cat", f"{out}/app.conf"]
    r = waitfor(args, {"DB_PASSWORD": "pw"}, prefix=["unshare", "--mount", "sh", "-c", script, "sh"])
    if "mount" in r.stderr and r.returncode != 0 and "waitfor" not in r.stderr:
        pytest.skip(f"cannot remount here: {r.stderr}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("host=localhost\npass=pw")
    # and a read-only destination is exit 2 before the app
    args = ["--template", f"{tmpl}:{tmp_path}/app.conf", "--", "true"]
    r = waitfor(args, {"DB_PASSWORD": "pw"}, prefix=["unshare", "--mount", "sh", "-c", script, "sh"])
    assert r.returncode == 2 and "not writable" in r.stderr, r.stderr


def test_templates_see_secrets_env(tmpl, tmp_path):
    sec = tmp_path / "pw"
    sec.write_text("from-file\n")
    dest = tmp_path / "app.conf"
    r = waitfor(["--secrets-env", "--template", f"{tmpl}:{dest}", "--", "cat", str(dest)],
                {"DB_PASSWORD_FILE": str(sec), "WAITFOR_SECRETS_DIRS": str(tmp_path)})
    assert r.returncode == 0 and "pass=from-file\n" in r.stdout, r.stderr


def test_validate_shows_them(tmpl, tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"templates:\n  - src: {tmpl}\n    dest: /etc/app.conf\n    mode: 0640\n")
    r = waitfor(["validate", "--offline", "-c", str(cfg)])
    assert r.returncode == 0, r.stderr
    assert f"templates:\n- src: {tmpl}\n  dest: /etc/app.conf\n  mode: '0640'\n" in r.stdout, r.stdout


@needs_root
def test_a_failed_write_after_the_wait_leaves_nothing_half_written(tmp_path):
    """A full destination filesystem (a 16 KiB tmpfs, a 64 KiB rendering): exit 2, the app
    is not started, the old file is intact and no temporary file is left."""
    big = tmp_path / "big.tmpl"
    big.write_text("${FILL}\n" * 8192)  # 8 bytes a line once rendered
    out = tmp_path / "out"
    out.mkdir()
    script = (f"mount -t tmpfs -o size=16k tmpfs {out} && echo old > {out}/app.conf && \"$@\"; "
              f"code=$?; ls -A {out}; cat {out}/app.conf; exit $code")
    args = ["--template", f"{big}:{out}/app.conf", "--", "touch", f"{tmp_path}/ran"]
    r = waitfor(args, {"FILL": "1234567"}, prefix=["unshare", "--mount", "sh", "-c", script, "sh"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"cannot write {out}/app.conf: No space left on device" in r.stderr, r.stderr
    assert r.stdout == "app.conf\nold\n", "the old file, whole, and nothing else"
    assert not (tmp_path / "ran").exists(), "the app must not start"


def test_the_docker_example_templates_render(tmp_path):
    """docker/templates/*.tmpl, with the example's defaults only (no variable set)."""
    folder = os.path.join(REPO, "docker", "templates")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".tmpl"))
    assert names
    for n in names:
        r = waitfor(["--template", f"{folder}/{n}:{tmp_path}/{n}", "--", "cat", f"{tmp_path}/{n}"])
        assert r.returncode == 0, (n, r.stderr)
        values = [line for line in r.stdout.splitlines() if not line.startswith(";")]
        assert values and not any("$" in line for line in values), r.stdout


# --------------------------------------------------------------------------- inputs bounded


def test_a_fifo_source_is_exit_2_at_once_not_a_hang(tmp_path):
    fifo = tmp_path / "app.tmpl"
    os.mkfifo(fifo)
    r = waitfor(["--template", f"{fifo}:{tmp_path}/app.conf", "-t", "30s", "tcp://127.0.0.1:1", "--", "true"],
                timeout=15)
    assert r.returncode == 2 and r.took < 10, (r.stderr, r.took)
    assert r.stderr == f"waitfor: error: template {fifo}: cannot read it: not a regular file\n"


def test_a_source_over_4_mib_is_exit_2(tmp_path):
    big = tmp_path / "big.tmpl"
    big.write_bytes(b"x" * ((4 << 20) + 1))
    r = waitfor(["--template", f"{big}:{tmp_path}/out", "--", "true"])
    assert r.returncode == 2 and "larger than 4 MiB" in r.stderr, r.stderr


def test_values_that_are_not_utf8_are_written_as_they_are(tmp_path):
    """A binary NAME_FILE (secrets_env) and a Latin-1 value under the C locale: the bytes
    go through unchanged, as with dockerize and envsubst (was: exit 70 after the wait)."""
    tmpl = tmp_path / "app.tmpl"
    tmpl.write_bytes(b"bin=${BIN}\nname=${NAME}\nraw=\xff\xfe\n")
    secret = tmp_path / "bin"
    secret.write_bytes(b"\x80\x81\xc3(\xfe\n")
    dest = tmp_path / "app.conf"
    env = bare_env(LC_ALL="C", BIN_FILE=str(secret), WAITFOR_SECRETS_DIRS=str(tmp_path))
    envb = {k.encode(): v.encode() for k, v in env.items()}
    envb[b"NAME"] = b"caf\xe9"
    r = core.waitfor("--secrets-env", "--template", f"{tmpl}:{dest}", "--", "true", text=False, env=envb, timeout=20)
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == b"bin=\x80\x81\xc3(\xfe\nname=caf\xe9\nraw=\xff\xfe\n"


def test_a_rendering_over_4_mib_is_one_line_exit_2_before_the_wait(tmp_path):
    """200,000 references to a 64 KiB value would be 13 GB: refused as soon as the output
    passes the limit, before anything waits."""
    tmpl = tmp_path / "bomb.tmpl"
    tmpl.write_text("$A" * 200_000)
    r = waitfor(["--template", f"{tmpl}:{tmp_path}/out", "-t", "30s", "tcp://127.0.0.1:1", "--", "true"],
                {"A": "x" * 65536})
    assert r.returncode == 2 and r.took < 10, (r.stderr[:300], r.took)
    assert r.stderr == f"waitfor: error: template {tmpl}: rendered, it is larger than 4 MiB\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("written, mode", [("644", 0o644), ("0644", 0o644), ("440", 0o440), ("'640'", 0o640),
                                           ("'0o600'", 0o600), ("0600", 0o600), ("755", 0o755)])
def test_mode_digits_are_octal_as_chmod_reads_them(tmp_path, written, mode):
    src = tmp_path / "a.tmpl"
    src.write_text("a\n")
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"templates:\n  - src: {src}\n    dest: {tmp_path}/a.conf\n    mode: {written}\n")
    r = waitfor(["-c", str(cfg), "--", "true"])
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((tmp_path / "a.conf").stat().st_mode) == mode


@pytest.mark.parametrize("written, words", [("4755", "set-user-id"), ("1777", "set-user-id"), ("'2640'", "set-user-id"),
                                            ("648", "octal"), ("12345", "octal"), ("0x1a4", "octal"),
                                            ("-1", "octal"), ("true", "octal")])
def test_set_id_sticky_and_non_octal_modes_are_exit_2(tmp_path, written, words):
    src = tmp_path / "a.tmpl"
    src.write_text("a\n")
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"templates:\n  - src: {src}\n    dest: {tmp_path}/a.conf\n    mode: {written}\n")
    r = waitfor(["-c", str(cfg), "--", "true"])
    assert r.returncode == 2 and words in r.stderr and "w.yaml:1: templates" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "a.conf").exists()


# --------------------------------------------------------------------------- unsafe paths
# As root, with a real non-root user (nobody) who owns /data, as in an image whose app user
# owns its data folder and could plant symlinks there.
# The tree lives in its own 0755 folder under /tmp (pytest's own is root-only, which
# nobody could not reach).

SYS_PY = "/usr/bin/python3"


@pytest.fixture
def tree():
    """base/data owned by nobody, base/secret a root-only folder (0700)."""
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root and a non-root user")
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="waitfor-unsafe-paths-", dir="/tmp")
    os.chmod(base, 0o755)
    data, secret = os.path.join(base, "data"), os.path.join(base, "secret")
    os.mkdir(data)
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    os.mkdir(secret, 0o700)
    src = os.path.join(base, "app.tmpl")
    with open(src, "w") as f:
        f.write("pass=${DB_PASSWORD:-x}\n")
    try:
        yield base, data, secret, src, nobody
    finally:
        shutil.rmtree(base)


def as_nobody(nobody, source, *args):
    """A process of the real user nobody (the system interpreter: nobody cannot read ours)."""
    if not os.access(SYS_PY, os.X_OK):
        pytest.skip(f"{SYS_PY} is not installed")
    return subprocess.Popen([SYS_PY, "-I", "-S", "-c", source, *args], user=nobody.pw_uid, group=nobody.pw_gid,
                            extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_symlinked_folder_planted_by_the_user_is_refused(tree):
    _base, data, secret, src, nobody = tree
    p = as_nobody(nobody, "import os, sys; os.symlink(sys.argv[1], sys.argv[2])", secret, f"{data}/conf")
    assert p.wait(10) == 0, p.stderr.read()
    assert os.lstat(f"{data}/conf").st_uid == nobody.pw_uid
    r = waitfor(["--user", "nobody", "--template", f"{src}:{data}/conf/app.ini", "--", "true"])
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"waitfor: error: template {src}: cannot write {data}/conf/app.ini: unsafe path: "
                               f"{data}/conf is a symbolic link in a folder owned by uid {nobody.pw_uid}"), r.stderr
    assert os.listdir(secret) == [], "nothing created in the root-only folder"


def test_a_folder_swapped_for_a_symlink_during_the_wait_is_refused(tree):
    """Checked before the wait (a real folder: fine), swapped by the user while waitfor
    waits on a late dependency, then written: the write walks the path again."""
    base, data, secret, src, nobody = tree
    p = as_nobody(nobody, "import os, sys; os.mkdir(sys.argv[1])", f"{data}/conf")
    assert p.wait(10) == 0, p.stderr.read()
    flag = f"{base}/ready"
    env = bare_env()
    w = spawn("--user", "nobody", "-t", "30s", f"file://{flag}", "--template", f"{src}:{data}/conf/app.ini", "--",
              "true", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        assert w.poll() is None, w.stderr.read()
        swap = ("import os, sys; d, s = sys.argv[1:]; os.rename(d + '/conf', d + '/conf.old'); "
                "os.symlink(s, d + '/conf')")
        p = as_nobody(nobody, swap, data, secret)
        assert p.wait(10) == 0, p.stderr.read()
        open(flag, "w").close()
        _, err = w.communicate(timeout=20)
    finally:
        w.kill()
    assert w.returncode == 2 and "unsafe path" in err, err
    assert os.listdir(secret) == [] and os.listdir(f"{data}/conf.old") == []


RACER = """
import os, sys
d, s = sys.argv[1:]
os.mkdir(d + "/real")
os.symlink(s, d + "/link")
sys.stdout.write("go\\n")
sys.stdout.flush()
while True:  # conf: the symlink, nothing, the user's own folder, nothing, ... (rename(2) is atomic)
    os.rename(d + "/link", d + "/conf")
    os.rename(d + "/conf", d + "/link")
    os.rename(d + "/real", d + "/conf")
    os.rename(d + "/conf", d + "/real")
"""


def test_a_symlink_swapped_in_and_out_while_writing_never_redirects_the_write(tree):
    """A real race: the user flips `conf` between a symlink to the root-only folder and
    its own folder in a tight loop while waitfor checks and writes. Each run writes into
    the user's folder or refuses; nothing ever lands in the root-only folder."""
    _base, data, secret, src, nobody = tree
    racer = as_nobody(nobody, RACER, data, secret)
    try:
        assert racer.stdout.readline() == "go\n", racer.stderr.read()
        outcomes = []
        for _ in range(20):
            r = waitfor(["--template", f"{src}:{data}/conf/app.ini", "--", "true"])
            assert r.returncode == 0 or "unsafe path" in r.stderr or "does not exist" in r.stderr, r.stderr
            outcomes.append("written" if r.returncode == 0 else "unsafe" if "unsafe" in r.stderr else "missing")
            assert os.listdir(secret) == [], "the write was redirected into the root-only folder"
    finally:
        racer.kill()
        racer.wait()
    assert "unsafe" in outcomes, f"the race never met the symlink, the test proved nothing: {outcomes}"


def test_safe_layouts_still_work(tree):
    """Root's own symlink in a root-only folder is followed (/var/run -> /run); a folder
    of the user's, reached through root's folders, is written as before."""
    base, data, _secret, src, nobody = tree
    os.mkdir(f"{base}/real", 0o755)
    os.symlink(f"{base}/real", f"{base}/via")
    r = waitfor(["--template", f"{src}:{base}/via/app.ini", "--", "true"])
    assert r.returncode == 0 and os.path.exists(f"{base}/real/app.ini"), r.stderr
    p = as_nobody(nobody, "import os, sys; os.mkdir(sys.argv[1])", f"{data}/conf")
    assert p.wait(10) == 0
    r = waitfor(["--user", "nobody", "--template", f"{src}:{data}/conf/app.ini", "--", "true"])
    assert r.returncode == 0 and os.stat(f"{data}/conf/app.ini").st_uid == nobody.pw_uid, r.stderr
    # a relative path with .. is walked as the kernel would
    r = waitfor(["--template", f"{src}:{base}/real/../real/b.ini", "--", "true"])
    assert r.returncode == 0 and os.path.exists(f"{base}/real/b.ini"), r.stderr


def test_validate_checks_templates_as_run_would(tmpl, tmp_path):
    """A missing source, a missing destination folder, a missing required variable: exit 2
    from `validate` as from `run`; `--offline` (CI, another machine) checks no file."""
    cases = [
        (f"{tmp_path}/missing.tmpl", f"{tmp_path}/x", {"DB_PASSWORD": "pw"}, "cannot read it"),
        (str(tmpl), f"{tmp_path}/no/such/x", {"DB_PASSWORD": "pw"}, "does not exist"),
        (str(tmpl), f"{tmp_path}/x", {}, "required variable DB_PASSWORD is not set"),
    ]
    for src, dest, env, words in cases:
        cfg = tmp_path / "w.yaml"
        cfg.write_text(f"templates:\n  - src: {src}\n    dest: {dest}\n")
        r = waitfor(["validate", "-c", str(cfg)], env)
        assert r.returncode == 2 and words in r.stderr and r.stdout == "", (src, dest, r.stderr)
        r = waitfor(["validate", "--offline", "-c", str(cfg)], env)
        assert r.returncode == 0, r.stderr
    assert not (tmp_path / "x").exists(), "validate writes nothing"
    r = waitfor(["validate", "-c", str(cfg)], {"DB_PASSWORD": "pw"})
    assert r.returncode == 0 and not (tmp_path / "x").exists(), r.stderr


def test_validate_refuses_an_unsafe_path(tree):
    _base, data, secret, src, nobody = tree
    p = as_nobody(nobody, "import os, sys; os.symlink(sys.argv[1], sys.argv[2])", secret, f"{data}/conf")
    assert p.wait(10) == 0, p.stderr.read()
    cfg = f"{_base}/w.yaml"
    with open(cfg, "w") as f:
        f.write(f"templates:\n  - src: {src}\n    dest: {data}/conf/app.ini\n")
    r = waitfor(["validate", "-c", cfg])
    assert r.returncode == 2 and "unsafe path" in r.stderr, r.stderr


def test_a_source_the_user_redirected_is_not_read(tree):
    """Root reads the sources, and the rendering lands in a file the user may read: a
    source in the user's folder that is a symlink to a root-only file (or a hard link to
    one) would hand its content over. Refused; the user's own file is read as before."""
    base, data, secret, _src, nobody = tree
    with open(f"{secret}/key", "w") as f:
        f.write("root-only\n")
    p = as_nobody(nobody, "import os, sys; os.symlink(sys.argv[1], sys.argv[2])", f"{secret}/key",
                  f"{data}/app.tmpl")
    assert p.wait(10) == 0, p.stderr.read()
    out = f"{base}/out.ini"
    r = waitfor(["--template", f"{data}/app.tmpl:{out}", "--", "true"])
    assert r.returncode == 2 and "unsafe path" in r.stderr and not os.path.exists(out), r.stderr
    os.unlink(f"{data}/app.tmpl")
    os.link(f"{secret}/key", f"{data}/app.tmpl")  # as if the user could link it (protected_hardlinks=0)
    r = waitfor(["--template", f"{data}/app.tmpl:{out}", "--", "true"])
    assert r.returncode == 2 and "owned by uid 0, in a folder owned by uid" in r.stderr, r.stderr
    assert not os.path.exists(out)
    os.unlink(f"{data}/app.tmpl")
    p = as_nobody(nobody, "open(__import__('sys').argv[1], 'w').write('own=${X:-1}\\n')", f"{data}/app.tmpl")
    assert p.wait(10) == 0, p.stderr.read()
    r = waitfor(["--template", f"{data}/app.tmpl:{out}", "--", "true"])
    assert r.returncode == 0 and open(out).read() == "own=1\n", r.stderr


def test_validate_reports_every_template_s_error(tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"templates:\n  - src: {tmp_path}/one.tmpl\n    dest: {tmp_path}/x\n"
                   f"  - src: {tmp_path}/two.tmpl\n    dest: {tmp_path}/y\n")
    r = waitfor(["validate", "-c", str(cfg)])
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [f"waitfor: error: template {tmp_path}/{n}.tmpl: cannot read it: "
                                     "No such file or directory" for n in ("one", "two")], r.stderr
