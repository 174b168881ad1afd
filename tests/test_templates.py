"""Issue 11 item 3: `templates:` / `--template SRC:DEST`, rendered with the config's own
interpolation (waitfor.config.interpolate), checked before the wait, written atomically
after it and before the app. Black-box through the real CLI."""

import os
import pwd
import stat
import subprocess
import sys
import time

import pytest

from helpers.pid1 import REPO

TEMPLATE = "host=${DB_HOST:-localhost}\npass=${DB_PASSWORD:?set DB_PASSWORD}\nprice=$$5\n"


def waitfor(args, env=None, timeout=20, prefix=()):
    full = {"PATH": os.environ["PATH"], "PYTHONPATH": REPO, **(env or {})}
    t0 = time.monotonic()
    r = subprocess.run([*prefix, sys.executable, "-m", "waitfor", *args], capture_output=True, text=True,
                       env=full, timeout=timeout)
    r.took = time.monotonic() - t0
    return r


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
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": REPO, "DB_PASSWORD": "pw"}
    p = subprocess.Popen([sys.executable, "-m", "waitfor", "--template", f"{tmpl}:{dest}", "-t", "20s",
                          f"file://{flag}", "--", "cat", str(dest)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
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
