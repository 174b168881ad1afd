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


@pytest.fixture
def secret(tmp_path):
    p = tmp_path / "db_password"
    p.write_text(SECRET + "\n")
    return str(p)


def test_name_file_becomes_name_and_is_removed(secret):
    r = waitfor(["--secrets-env", "--", "sh", "-c", SHOW], {"DB_PASSWORD_FILE": secret})
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{SECRET}|unset|unset"


def test_only_one_trailing_newline_is_removed(tmp_path):
    p = tmp_path / "s"
    p.write_bytes(b"line1\nline2\n\n")
    r = waitfor(["--secrets-env", "--", "sh", "-c", 'printf "%s" "$DB_PASSWORD" | od -c'],
                {"DB_PASSWORD_FILE": str(p)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split().count("\\n") == 2, r.stdout


def test_yaml_key_and_off_by_default(secret, tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text("secrets_env: true\n")
    r = waitfor(["-c", str(cfg), "--", "sh", "-c", SHOW], {"DB_PASSWORD_FILE": secret})
    assert r.stdout == f"{SECRET}|unset|unset", r.stderr
    r = waitfor(["--", "sh", "-c", SHOW], {"DB_PASSWORD_FILE": secret})
    assert r.stdout == f"unset|{secret}|unset", "without secrets_env nothing changes"


def test_a_list_of_names_reads_only_those(secret):
    env = {"DB_PASSWORD_FILE": secret, "OTHER_FILE": "/nonexistent", "WAITFOR_SECRETS_ENV": "DB_PASSWORD"}
    r = waitfor(["--", "sh", "-c", SHOW + '; printf "|%s" "$OTHER_FILE"'], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{SECRET}|unset|unset|/nonexistent"


def test_waitfors_own_file_variables_are_left_alone(secret, tmp_path):
    env = {"DB_PASSWORD_FILE": secret, "WAITFOR_STATE_FILE": str(tmp_path / "state")}
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
    _fails_before_waiting({"DB_PASSWORD_FILE": secret, "DB_PASSWORD": SECRET}, "DB_PASSWORD_FILE", "both")


def test_unreadable_nonregular_or_huge_files_are_exit_2(tmp_path):
    _fails_before_waiting({"DB_PASSWORD_FILE": str(tmp_path / "missing")}, "DB_PASSWORD_FILE", "cannot read")
    _fails_before_waiting({"DB_PASSWORD_FILE": str(tmp_path)}, "DB_PASSWORD_FILE", "not a regular file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _fails_before_waiting({"DB_PASSWORD_FILE": str(fifo)}, "not a regular file")  # and no hang on open
    big = tmp_path / "big"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    _fails_before_waiting({"DB_PASSWORD_FILE": str(big)}, "DB_PASSWORD_FILE", "larger than")
    _fails_before_waiting({"DB_PASSWORD_FILE": "/dev/zero"}, "not a regular file")


def test_values_are_masked_in_log_lines_text_and_json(secret):
    # The secret as the app's name: `command not found` would print it.
    for fmt in ("text", "json"):
        r = waitfor(["--secrets-env", "--log-format", fmt, "--", SECRET], {"DB_PASSWORD_FILE": secret})
        assert r.returncode == 127
        assert SECRET not in r.stderr and "***" in r.stderr, r.stderr


def test_values_are_masked_in_log_lines_of_the_wait(secret, tmp_path):
    # a command dependency whose own name holds the value: its progress lines name it
    cfg = tmp_path / "w.yaml"
    cfg.write_text("secrets_env: true\ntimeout: 1s\ndependencies:\n"
                   f"  - name: 'db-{SECRET}'\n    command: [sh, -c, 'exit 1']\n")
    r = waitfor(["-c", str(cfg), "--", "true"], {"DB_PASSWORD_FILE": secret})
    assert r.returncode != 0 and "db-***" in r.stderr and SECRET not in r.stderr, r.stderr


def test_validate_masks_them_and_fails_like_the_start(secret, tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text(f"secrets_env: true\ndependencies:\n  - name: 'db-{SECRET}'\n    url: tcp://db:5432\n")
    r = waitfor(["validate", "-c", str(cfg)], {"DB_PASSWORD_FILE": secret})
    assert r.returncode == 0, r.stderr
    assert "secrets_env: true" in r.stdout and "db-***" in r.stdout and SECRET not in r.stdout
    r = waitfor(["validate", "-c", str(cfg)], {"DB_PASSWORD_FILE": secret, "DB_PASSWORD": "x"})
    assert r.returncode == 2 and "both DB_PASSWORD and DB_PASSWORD_FILE" in r.stderr


def test_bad_names_in_the_list_are_exit_2():
    r = waitfor(["--", "true"], {"WAITFOR_SECRETS_ENV": "DB_PASSWORD_FILE"})
    assert r.returncode == 2 and "WAITFOR_SECRETS_ENV" in r.stderr, r.stderr
