"""`secrets_env` / `--secrets-env` / WAITFOR_SECRETS_ENV, the file_env of
the official postgres and mysql images. Black-box through the real CLI, each run with a
clean environment (a developer's own *_FILE variables, such as TF_CLI_CONFIG_FILE, would
otherwise take part)."""

import os

import pytest

from helpers import core
from helpers.core import bare_env

SECRET = "s3cr3t-Value!"
SHOW = 'printf "%s|%s|%s" "${DB_PASSWORD-unset}" "${DB_PASSWORD_FILE-unset}" "${OTHER-unset}"'


def waitfor(args, env=None, timeout=20):
    """`waitfor ARGS` with only PATH, PYTHONPATH and `env` in its environment."""
    return core.waitfor(*args, env=bare_env(**(env or {})), timeout=timeout)


def inside(path):
    """`secrets_env: true` takes a NAME_FILE directly inside a secrets folder:
    the test's folder is configured as one."""
    return {"WAITFOR_SECRETS_DIRS": os.path.dirname(os.path.abspath(path))}


@pytest.fixture
def secret(tmp_path):
    p = tmp_path / "db_password"
    p.write_text(SECRET + "\n")
    return str(p)


def test_name_file_becomes_name_and_is_removed(secret):
    r = waitfor(["--secrets-env", "--", "sh", "-c", SHOW], {"DB_PASSWORD_FILE": secret, **inside(secret)})
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{SECRET}|unset|unset"


def test_only_one_trailing_newline_is_removed(tmp_path):
    p = tmp_path / "s"
    p.write_bytes(b"line1\nline2\n\n")
    r = waitfor(["--secrets-env", "--", "sh", "-c", 'printf "%s" "$DB_PASSWORD" | od -c'],
                {"DB_PASSWORD_FILE": str(p), **inside(str(p))})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split().count("\\n") == 2, r.stdout


def test_yaml_key_and_off_by_default(secret, tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text("secrets_env: true\n")
    r = waitfor(["-c", str(cfg), "--", "sh", "-c", SHOW], {"DB_PASSWORD_FILE": secret, **inside(secret)})
    assert r.stdout == f"{SECRET}|unset|unset", r.stderr
    r = waitfor(["--", "sh", "-c", SHOW], {"DB_PASSWORD_FILE": secret, **inside(secret)})
    assert r.stdout == f"unset|{secret}|unset", "without secrets_env nothing changes"


def test_a_list_of_names_reads_only_those(secret):
    env = {"DB_PASSWORD_FILE": secret, **inside(secret), "OTHER_FILE": "/nonexistent", "WAITFOR_SECRETS_ENV": "DB_PASSWORD"}
    r = waitfor(["--", "sh", "-c", SHOW + '; printf "|%s" "$OTHER_FILE"'], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{SECRET}|unset|unset|/nonexistent"


def test_waitfors_own_file_variables_are_left_alone(secret, tmp_path):
    env = {"DB_PASSWORD_FILE": secret, **inside(secret), "WAITFOR_STATE_FILE": str(tmp_path / "state")}
    r = waitfor(["--secrets-env", "--", "sh", "-c", 'printf "%s" "$WAITFOR_STATE_FILE"'], env)
    assert r.returncode == 0 and r.stdout == str(tmp_path / "state"), r.stderr


def _fails_before_waiting(env, *words):
    r = waitfor(["--secrets-env", "-t", "30s", "tcp://127.0.0.1:1", "--", "true"], env)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.took < 10, "the error must come before the wait"
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert SECRET not in r.stderr
    return r


def test_both_set_is_exit_2_naming_the_variable_not_the_value(secret):
    _fails_before_waiting({"DB_PASSWORD_FILE": secret, **inside(secret), "DB_PASSWORD": SECRET}, "DB_PASSWORD_FILE", "both")


def test_unreadable_nonregular_or_huge_files_are_exit_2(tmp_path):
    _fails_before_waiting({"DB_PASSWORD_FILE": str(tmp_path / "missing"), **inside(str(tmp_path / "missing"))}, "DB_PASSWORD_FILE", "cannot read")
    _fails_before_waiting({"DB_PASSWORD_FILE": str(tmp_path), **inside(str(tmp_path))}, "DB_PASSWORD_FILE", "not a regular file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _fails_before_waiting({"DB_PASSWORD_FILE": str(fifo), **inside(str(fifo))}, "not a regular file")  # and no hang on open
    big = tmp_path / "big"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    _fails_before_waiting({"DB_PASSWORD_FILE": str(big), **inside(str(big))}, "DB_PASSWORD_FILE", "larger than")
    _fails_before_waiting({"DB_PASSWORD_FILE": "/dev/zero", **inside("/dev/zero")}, "not a regular file")


def test_values_are_masked_in_log_lines_text_and_json(secret):
    # The secret as the app's name: `command not found` would print it.
    for fmt in ("text", "json"):
        r = waitfor(["--secrets-env", "--log-format", fmt, "--", SECRET], {"DB_PASSWORD_FILE": secret, **inside(secret)})
        assert r.returncode == 127
        assert SECRET not in r.stderr and "***" in r.stderr, r.stderr


def test_values_are_masked_in_log_lines_of_the_wait(secret, tmp_path):
    # a command dependency whose own name holds the value: its progress lines name it
    cfg = tmp_path / "w.yaml"
    cfg.write_text("secrets_env: true\ntimeout: 1s\ndependencies:\n"
                   f"  - name: 'db-{SECRET}'\n    command: [sh, -c, 'exit 1']\n")
    r = waitfor(["-c", str(cfg), "--", "true"], {"DB_PASSWORD_FILE": secret, **inside(secret)})
    assert r.returncode != 0 and "db-***" in r.stderr and SECRET not in r.stderr, r.stderr


def test_validate_masks_them_and_fails_like_the_start(secret, tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"secrets_env: true\ndependencies:\n  - name: 'db-{SECRET}'\n    url: tcp://db:5432\n")
    r = waitfor(["validate", "-c", str(cfg)], {"DB_PASSWORD_FILE": secret, **inside(secret)})
    assert r.returncode == 0, r.stderr
    assert "secrets_env: true" in r.stdout and "db-***" in r.stdout and SECRET not in r.stdout
    r = waitfor(["validate", "-c", str(cfg)], {"DB_PASSWORD_FILE": secret, **inside(secret), "DB_PASSWORD": "x"})
    assert r.returncode == 2 and "both DB_PASSWORD and DB_PASSWORD_FILE" in r.stderr


def test_bad_names_in_the_list_are_exit_2():
    r = waitfor(["--", "true"], {"WAITFOR_SECRETS_ENV": "DB_PASSWORD_FILE"})
    assert r.returncode == 2 and "WAITFOR_SECRETS_ENV" in r.stderr, r.stderr


# --------------------------------------------------------------------------- what `true` leaves alone

# Variables that programs read as paths, re-read or need as files: `true` must leave them.
PATH_VARIABLES = ("AWS_WEB_IDENTITY_TOKEN_FILE", "SSL_CERT_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                  "TF_CLI_CONFIG_FILE")
SHOW_ALL = " ".join(f'"${{{v}-unset}}" "${{{v[:-5]}-unset}}"' for v in PATH_VARIABLES)


def _path_files(tmp_path):
    env = {}
    for var in PATH_VARIABLES:
        p = tmp_path / "etc" / var.lower()
        p.parent.mkdir(exist_ok=True)
        p.write_text(f"content of {var}\n")
        env[var] = str(p)
    return env


@pytest.mark.parametrize("how", ["yaml", "flag", "env"])
def test_true_takes_only_files_directly_inside_the_secrets_folders(tmp_path, how):
    """EKS's AWS_WEB_IDENTITY_TOKEN_FILE (the SDK re-reads the rotating file), SSL_CERT_FILE,
    AWS_SHARED_CREDENTIALS_FILE and TF_CLI_CONFIG_FILE stay as they are; DB_PASSWORD_FILE in
    the configured secrets folder becomes DB_PASSWORD; a token in a sub-folder of it (where
    Kubernetes and EKS mount theirs) is left alone."""
    secrets = tmp_path / "secrets"
    (secrets / "eks.amazonaws.com" / "serviceaccount").mkdir(parents=True)
    (secrets / "db_password").write_text(SECRET + "\n")
    token = secrets / "eks.amazonaws.com" / "serviceaccount" / "token"
    token.write_text("rotating-token\n")
    env = {**_path_files(tmp_path), "DB_PASSWORD_FILE": str(secrets / "db_password"),
           "AWS_WEB_IDENTITY_TOKEN_FILE": str(token)}
    args = ["--secrets-env"]
    if how == "yaml":
        cfg = tmp_path / "w.yaml"
        cfg.write_text(f"secrets_env: true\nsecrets_dirs: [{tmp_path / 'nothing'}, {secrets}]\n")
        args = ["-c", str(cfg)]
    elif how == "flag":
        args += ["--secrets-dir", str(tmp_path / "nothing"), "--secrets-dir", str(secrets)]
    else:
        env["WAITFOR_SECRETS_DIRS"] = f"{tmp_path / 'nothing'},{secrets}"
    r = waitfor([*args, "--", "sh", "-c", f'printf "%s|" "$DB_PASSWORD" "${{DB_PASSWORD_FILE-unset}}" {SHOW_ALL}'],
                env)
    assert r.returncode == 0, r.stderr
    want = [SECRET, "unset"]
    for var in PATH_VARIABLES:
        want += [env[var], "unset"]
    assert r.stdout.split("|")[:-1] == want


def test_true_with_the_default_folder_leaves_files_elsewhere_alone(tmp_path):
    env = _path_files(tmp_path)
    r = waitfor(["--secrets-env", "--", "sh", "-c", f'printf "%s|" {SHOW_ALL}'], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("|")[:-1] == [x for var in PATH_VARIABLES for x in (env[var], "unset")]


def test_the_default_folder_is_run_secrets_also_through_var_run():
    """A NAME_FILE under /run/secrets (or /var/run/secrets, /var/run being a link to /run)
    is taken: a missing one is then exit 2; one in a sub-folder is not taken at all."""
    from waitfor.config import secrets_env

    assert secrets_env.DEFAULT_DIRS == ("/run/secrets",)
    folders = {os.path.realpath("/run/secrets")}
    assert secrets_env.directly_inside("/run/secrets/db_password", folders)
    assert secrets_env.directly_inside("/run/secrets/sub/../db_password", folders)
    assert not secrets_env.directly_inside("/run/secrets/../shadow", folders)
    assert not secrets_env.directly_inside("/run/secrets/", folders)
    assert not secrets_env.directly_inside("/var/run/secrets/eks.amazonaws.com/serviceaccount/token", folders)
    assert not secrets_env.directly_inside("/var/run/secrets/kubernetes.io/serviceaccount/token", folders)
    if os.path.realpath("/var/run") == "/run":
        assert secrets_env.directly_inside("/var/run/secrets/db_password", folders)
    missing = "/run/secrets/waitfor-test-missing-secret"
    assert not os.path.exists(missing)
    r = waitfor(["--secrets-env", "--", "true"], {"DB_PASSWORD_FILE": missing})
    assert r.returncode == 2 and "DB_PASSWORD_FILE" in r.stderr and "cannot read" in r.stderr, r.stderr
    r = waitfor(["--secrets-env", "--", "true"],
                {"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"})
    assert r.returncode == 0, r.stderr


def test_a_list_of_names_still_reads_files_anywhere(tmp_path):
    env = {**_path_files(tmp_path), "WAITFOR_SECRETS_ENV": "SSL_CERT,TF_CLI_CONFIG"}
    r = waitfor(["--", "sh", "-c", 'printf "%s|%s|%s" "$SSL_CERT" "$TF_CLI_CONFIG" "${SSL_CERT_FILE-unset}"'], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "content of SSL_CERT_FILE|content of TF_CLI_CONFIG_FILE|unset"


@pytest.mark.parametrize("value", ["relative/dir", "", "/ok,rel"])
def test_bad_secrets_dirs_are_exit_2(value):
    r = waitfor(["--secrets-env", "--", "true"], {"WAITFOR_SECRETS_DIRS": value or ","})
    if value == "":
        assert r.returncode == 0, r.stderr  # an empty list: true then takes nothing
        return
    assert r.returncode == 2 and "WAITFOR_SECRETS_DIRS" in r.stderr and r.stderr.count("\n") == 1, r.stderr


# --------------------------------------------------------------------------- secrets_env in every subcommand's probes

NEEDS_PASSWORD = f"""\
secrets_env: [DB_PASSWORD]
timeout: 5s
dependencies:
  - name: login
    command: [sh, -c, 'test "$$DB_PASSWORD" = "{SECRET}" || {{ echo "wrong password: $$DB_PASSWORD"; exit 1; }}']
"""


@pytest.mark.parametrize("mode", ["run", "wait", "check", "health"])
def test_probes_see_secrets_env_under_every_subcommand(secret, tmp_path, mode):
    """The setting applies wherever probes run: a command dependency that needs
    $DB_PASSWORD passes under health, check and wait as it does under run."""
    cfg = tmp_path / "w.yaml"
    cfg.write_text(NEEDS_PASSWORD)
    tail = ["--", "true"] if mode == "run" else []
    env = {"DB_PASSWORD_FILE": secret, "WAITFOR_STATE_FILE": str(tmp_path / "state.json")}
    r = waitfor([mode, "-c", str(cfg), *tail], env)
    assert r.returncode == 0, r.stdout + r.stderr
    if mode in ("check", "health"):
        assert r.stdout == "ok login: exit 0\n", r.stdout
    # and with the flag, the environment's name list, a wrong value: masked in the output
    bad = tmp_path / "bad"
    bad.write_text("wrong-secret-value\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text(NEEDS_PASSWORD.replace("secrets_env: [DB_PASSWORD]\ntimeout: 5s\n", "timeout: 1s\n"))
    r = waitfor([mode, "-c", str(plain), *tail], {**env, "DB_PASSWORD_FILE": str(bad),
                                                  "WAITFOR_SECRETS_ENV": "DB_PASSWORD"})
    assert r.returncode == (1 if mode in ("check", "health") else 124), r.stdout + r.stderr
    assert "wrong password: ***" in r.stdout + r.stderr and "wrong-secret-value" not in r.stdout + r.stderr
    r = waitfor([mode, "--secrets-env", "--secrets-dir", os.path.dirname(secret), "-c", str(plain), *tail], env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_sidecar_probes_see_secrets_env_too(secret, tmp_path):
    """sidecar runs probes like wait: its command dependency gets $DB_PASSWORD (ready,
    then SIGTERM is exit 0), and a wrong value is masked in its output (exit 124)."""
    import signal
    import subprocess

    cfg = tmp_path / "w.yaml"
    cfg.write_text(NEEDS_PASSWORD)
    env = {"DB_PASSWORD_FILE": secret, "WAITFOR_STATE_FILE": str(tmp_path / "state.json")}
    proc = core.spawn("sidecar", "-c", cfg, env=bare_env(**env), stderr=subprocess.PIPE, text=True)
    try:
        assert "ready" in proc.stderr.readline()  # the first line: login is ready
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        proc.wait()
    bad = tmp_path / "bad"
    bad.write_text("wrong-secret-value\n")
    r = waitfor(["sidecar", "-c", str(cfg), "-t", "1s"], {**env, "DB_PASSWORD_FILE": str(bad)})
    assert r.returncode == 124, r.stdout + r.stderr
    assert "wrong password: ***" in r.stderr and "wrong-secret-value" not in r.stdout + r.stderr


def test_health_with_a_bad_secret_file_is_unhealthy_not_2(tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text(NEEDS_PASSWORD)
    r = waitfor(["health", "-c", str(cfg)], {"DB_PASSWORD_FILE": str(tmp_path / "missing")})
    assert r.returncode == 1 and "DB_PASSWORD_FILE" in r.stderr and "cannot read" in r.stderr, r.stderr
