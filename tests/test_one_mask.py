"""One door out: every secret waitfor knows (secrets_env values, URL
passwords, header values, password files) is masked in every text that leaves it: log
lines, the state file, `health` and `check` output, the /readyz /livez /startupz bodies,
and a secret is masked before any cut, in the form that is actually printed.

Black-box through the real CLI, with real listeners on 127.0.0.1 and a real supervisor."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from helpers.core import APP_TRAPS_TERM, clean_env, free_port, get, spawn, wait_until, waitfor, write_config
from waitfor import output
from waitfor.probes import command

SECRET = "Zk7-qW3r-secret-9Xv"  # no character of it is an "x" or a "z": the padding cannot match


@pytest.fixture
def secret_file(tmp_path):
    p = tmp_path / "db_password"
    p.write_text(SECRET + "\n")
    return str(p)


def no_leak(text, secret=SECRET, piece=6):
    """Neither the secret nor any piece of it of `piece` characters (a cut one) is in text."""
    for i in range(len(secret) - piece + 1):
        assert secret[i:i + piece] not in text, f"{secret[i:i + piece]!r} of the secret leaked in:\n{text}"


# ------------------------------------------------------------------ one door out


def test_a_secrets_env_value_never_leaves_through_state_health_or_readyz(tmp_path, listener, secret_file):
    """A health command whose output holds $DB_PASSWORD (read by secrets_env): the state
    file's reason, `waitfor health` (answered from the state file), /readyz /livez
    /startupz and the log lines never show it. A check whose own name: holds it neither."""
    port = free_port()
    cfg = write_config(tmp_path, f"""
        secrets_env: [DB_PASSWORD]
        probe_addr: 127.0.0.1:{port}
        watch: {{interval: 200ms, failure_threshold: 1000}}
        dependencies: [{{name: db, url: "tcp://127.0.0.1:{listener.port}"}}]
        health:
          - name: login
            command: [sh, -c, 'echo "password authentication failed for $$DB_PASSWORD"; exit 1']
          - name: "check-{SECRET}"
            command: [sh, -c, 'exit 3']
    """)
    state = tmp_path / "state.json"
    env = clean_env(WAITFOR_STATE_FILE=str(state), DB_PASSWORD_FILE=secret_file)
    proc = spawn("run", "-c", cfg, "--", *APP_TRAPS_TERM, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                 env=env)
    try:
        def failing_seen():
            try:
                doc = json.loads(state.read_text())
            except (OSError, ValueError):
                return None
            return doc if doc["phase"] == "running" and len(doc["failing"]) == 2 else None

        doc = wait_until(failing_seen)
        assert doc, "the supervisor never reported both failing checks"
        text = state.read_text()
        no_leak(text)
        assert "password authentication failed for ***" in text, text
        assert "check-***" in text
        h = waitfor("health", "-c", cfg, env=env)
        assert h.returncode == 1, h.stdout + h.stderr
        assert "password authentication failed for ***" in h.stdout, h.stdout  # the supervisor's view
        no_leak(h.stdout + h.stderr)
        for path in ("/readyz", "/livez", "/startupz"):
            code, body = get(f"http://127.0.0.1:{port}{path}")
            no_leak(json.dumps(body))
        assert code == 200 and "check-***" in get(f"http://127.0.0.1:{port}/readyz")[1]["failing"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    no_leak(out + err)
    assert "watch: login failed" in err, err


def test_a_url_password_is_masked_in_another_dependencys_output(tmp_path, listener):
    """The mask is the config's, not one dependency's: a command that prints the password
    of another dependency's URL is masked too, in check's text and JSON output."""
    cfg = write_config(tmp_path, f"""
        dependencies:
          - tcp://app:{SECRET}@127.0.0.1:{listener.port}
          - name: probe
            command: [sh, -c, 'echo "connecting with {SECRET}"; exit 1']
    """)
    for fmt in ("text", "json"):
        r = waitfor("check", "-c", cfg, "--log-format", fmt)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "connecting with ***" in r.stdout, r.stdout
        no_leak(r.stdout + r.stderr)


# ------------------------------------------------------------------ mask before any cut


def test_a_secret_at_column_191_is_masked_before_the_200_character_cut(tmp_path, secret_file):
    cfg = write_config(tmp_path, """
        secrets_env: [DB_PASSWORD]
        timeout: 1s
        dependencies:
          - name: login
            command: [sh, -c, 'printf "%0190dx%s\\n" 0 "$$DB_PASSWORD"; exit 1']
    """)
    r = waitfor("run", "-c", cfg, "--", "true", env=clean_env(DB_PASSWORD_FILE=secret_file))
    assert r.returncode == 124, r.stderr
    assert "exit 1: 0000" in r.stderr, r.stderr
    no_leak(r.stderr, piece=4)


def test_a_secret_file_ending_in_crlf_is_masked_as_printed(tmp_path):
    p = tmp_path / "db_password"
    p.write_bytes(SECRET.encode() + b"\r\n")
    cfg = write_config(tmp_path, """
        secrets_env: [DB_PASSWORD]
        timeout: 1s
        dependencies:
          - name: login
            command: [sh, -c, 'printf "bad password %s\\n" "$$DB_PASSWORD"; exit 1']
    """)
    for fmt in ("text", "json"):
        r = waitfor("run", "-c", cfg, "--log-format", fmt, "--", "true", env=clean_env(DB_PASSWORD_FILE=str(p)))
        assert r.returncode == 124, r.stderr
        assert "bad password ***" in r.stderr, r.stderr
        no_leak(r.stderr)


def test_a_secret_cut_by_the_output_tail_is_not_shown_in_part(tmp_path, secret_file):
    """The probe keeps the last TAIL bytes of output: a line longer than that, which holds
    the secret at the cut, would start with the secret's end."""
    pad = command.TAIL - 8
    cfg = write_config(tmp_path, f"""
        secrets_env: [DB_PASSWORD]
        timeout: 1s
        dependencies:
          - name: login
            command: [sh, -c, 'printf "%s%0{pad}d" "$$DB_PASSWORD" 0; exit 1']
    """)
    r = waitfor("run", "-c", cfg, "--", "true", env=clean_env(DB_PASSWORD_FILE=secret_file))
    assert r.returncode == 124, r.stderr
    no_leak(r.stderr, piece=4)


def test_forms_of_a_secret_cover_what_output_handling_makes_of_it():
    value = 'pa"ss\\word\r'
    found = output.forms(value)
    assert {value, 'pa"ss\\word', output.clean(value), json.dumps(value)[1:-1]} <= found
    assert {"line-one", "line-two"} <= output.forms("line-one\nline-two\n")
    assert not output.forms("ab") and "a" not in output.forms("  a \n")


def test_cut_masks_before_it_cuts():
    assert output.cut("x" * 190 + SECRET, 200, {SECRET}) == "x" * 190 + "***"
    assert command.last_line(bytearray(b"x" * 190 + SECRET.encode() + b"\n"), frozenset({SECRET})) \
        == ": " + "x" * 190 + "***"


@pytest.mark.pid1
@pytest.mark.parametrize("how", ["pid1", "init"])
def test_the_lean_supervisor_masks_secrets_env_values_too(tmp_path, secret_file, how):
    """As PID 1 (a container's default) or with --init, waitfor re-execs into the lean
    supervisor, which gets the NAMEs (never the values) and masks their values."""
    from helpers.pid1 import NS, pid_namespace_unavailable

    if how == "pid1" and pid_namespace_unavailable():
        pytest.skip(pid_namespace_unavailable())
    env = clean_env(DB_PASSWORD_FILE=secret_file, WAITFOR_SECRETS_DIRS=str(tmp_path))
    mode = () if how == "pid1" else ("--init",)
    r = waitfor(*mode, "--secrets-env", "--", SECRET, prefix=NS if how == "pid1" else (), env=env, timeout=30)
    assert r.returncode == 127, r.stderr
    assert "***: command not found" in r.stderr, r.stderr
    no_leak(r.stderr)


def test_the_secret_names_survive_the_reexec_argv_and_no_value_is_in_it(secret_file):
    from waitfor import args, config
    from waitfor.signals import Inherited
    from waitfor.supervise.init import Options

    cfg = config.build(args.parse(["--", "app"]), env={"WAITFOR_SECRETS_ENV": "DB_PASSWORD,API_TOKEN"})
    before = Options.from_config(cfg, Inherited(frozenset(), frozenset()))
    argv = before.to_argv()
    assert Options.from_argv(argv).secret_env == ("DB_PASSWORD", "API_TOKEN")
    assert "--secret_env" in argv and SECRET not in " ".join(argv)


# ------------------------------------------------------------------ the mask, attacked


@pytest.fixture
def registry():
    saved = list(output._MASKED)
    output._MASKED.clear()
    yield
    output._MASKED[:] = saved


def _property_test():
    from hypothesis import given
    from hypothesis import strategies as st

    secrets = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                      min_size=6, max_size=40).filter(lambda s: len(s.strip()) >= 6 and "*" not in s)
    around = st.text(alphabet="abc xyz-=:/\t", max_size=30)

    @given(secret=secrets, before=around, after=around, ending=st.sampled_from(["", "\n", "\r\n", "\r"]))
    def check(registry, secret, before, after, ending):
        """Whatever the secret holds (quotes, backslashes, controls, non-ASCII, CR), a line
        that shows it, as written or stripped the way a command's output is, shows none of
        it: neither as text log, nor JSON log, nor stdout."""
        output.mask([secret + ending])
        shown = (secret + ending).strip()
        for text in (before + secret + ending + after, before + shown + after):
            line = output.format_line("text", "info", text).removeprefix("waitfor: ")
            assert output.clean(shown) not in line, line
            doc = json.loads(output.format_line("json", "info", "m", {"reason": text, "list": [text]}))
            assert shown not in doc["reason"] and shown not in doc["list"][0], doc
            assert shown not in output.cut(text, 200)

    return check


test_the_mask_holds_for_any_secret = _property_test()
