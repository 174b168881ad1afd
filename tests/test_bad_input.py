"""Bad input and hostile streams, through the real CLI: every bad input is exit 2 in
one located line, no secret is echoed, closed or full streams end cleanly, and both exec
paths report an exec failure the same way. Each runs the real CLI in a subprocess."""

import os
import stat
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.core import REPO, TcpServer, clean_env, waitfor


def one_error_line(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def yaml_file(tmp_path, text, name="deps.yaml"):
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(p)


# --------------------------------------------------------------------------- YAML


@pytest.mark.parametrize("text", [
    "timeout: !!int abc", "timeout: !!bool maybe", "timeout: !!timestamp foo", "timeout: !!float x",
    "timeout: !!seq x", "timeout: !!map x", "timeout: !custom 5", "timeout: 2001-13-45",
    "timeout: " + "9" * 5000, "timeout: " + "9" * 400, "timeout: " + "[" * 250 + "]" * 250,
])
def test_yaml_values_that_crashed_are_located_usage_errors(tmp_path, text):
    path = yaml_file(tmp_path, text + "\n")
    one_error_line(waitfor("validate", "-c", path), f"{path}:1")


def test_deeply_nested_defaults_and_long_after_chains(tmp_path):
    nested = "${A:-" * 1000 + "x" + "}" * 1000
    path = yaml_file(tmp_path, f"dependencies:\n  - url: 'tcp://h{nested}:1'\n")
    one_error_line(waitfor("validate", "-c", path), f"{path}:2", "nested")
    chain = "dependencies:\n" + "".join(
        f"  - {{url: 'tcp://h:{i + 1}', name: d{i}{', after: [d' + str(i - 1) + ']' if i else ''}}}\n"
        for i in range(1200))
    r = waitfor("validate", "--offline", "-c", yaml_file(tmp_path, chain, "chain.yaml"))
    assert r.returncode == 0, r.stderr[-500:]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["timeout", "interval", "dependencies", "health", "watch", "url", "name", "after",
                         "probe_addr", "stop_signal", "log_format", "command", "status", "x"]),
        children, max_size=4),
    max_leaves=12))
def test_any_yaml_document_is_exit_0_or_2_in_one_line(tmp_path, doc):
    """Generated configs (hypothesis): never a crash (70), never a traceback, one line per
    error (validate reports each of them, one per line of the file, sorted)."""
    import yaml

    path = yaml_file(tmp_path, yaml.safe_dump(doc), "fuzz.yaml")
    r = waitfor("validate", "--offline", "-c", path, timeout=20)
    assert r.returncode in (0, 2), (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    if r.returncode == 2:
        lines = r.stderr.strip().splitlines()
        assert lines and all(line.startswith("waitfor: error: ") for line in lines), r.stderr
        import re

        numbers = [int(m.group(1)) if m else 0
                   for m in (re.match(rf"waitfor: error: {re.escape(str(path))}:(\d+):", line) for line in lines)]
        assert numbers == sorted(numbers) and len(set(numbers) - {0}) == len([n for n in numbers if n]), r.stderr


_SECRET = "S3cr3t[PW]:@x"  # brackets, colon and @: what broke URL errors once


@settings(max_examples=80, deadline=None)
@given(scheme=st.sampled_from(["tcp", "http", "https", "postgres", "mysql", "redis", "amqp", "mqtt", "nats",
                               "grpc", "unix", "file", "dns", "bogus", ""]),
       host=st.text(alphabet="[]:%@/?#.-_az09\xff ", max_size=12),  # (argv holds no NUL)
       port=st.one_of(st.none(), st.integers(-5, 70000), st.text(alphabet="0123456789:[]a", max_size=6)),
       rest=st.text(alphabet="/?=&#%[]:@.a-", max_size=12))
def test_any_target_url_is_exit_0_or_2_in_one_line_and_never_shows_its_password(scheme, host, port, rest):
    """Generated target URLs with a password (hypothesis; 400 random URLs once
    found crashes and echoes): `validate --offline` says yes or one located line, never a
    traceback, never the password."""
    netloc = f"user:{_SECRET}@{host}" + ("" if port is None else f":{port}")
    url = f"{scheme}://{netloc}{rest}" if scheme else f"{netloc}{rest}"
    r = waitfor("validate", "--offline", url, text=False, cwd=REPO, env=clean_env(), timeout=20)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    assert r.returncode in (0, 2), (url, r.returncode, err)
    assert "Traceback" not in err, err
    assert _SECRET not in out + err and "S3cr3t" not in out + err, (url, out, err)
    if r.returncode == 2:
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("args,needle", [
    (["--probe-addr", "[::1:18081", "--", "true"], "--probe-addr"),
    (["--probe-addr", "::1:18081", "--", "true"], "--probe-addr"),
    (["wait", "tcp://[::1]]:6379"], "malformed brackets"),
    (["wait", "[::1]x:6379"], "malformed brackets"),
])
def test_bad_addresses_are_rejected(args, needle):
    one_error_line(waitfor(*args), needle)


def test_nul_in_probe_addr(tmp_path):
    path = yaml_file(tmp_path, 'probe_addr: "127.0.0.1\\0:8080"\n')
    one_error_line(waitfor("validate", "-c", path), f"{path}:1: probe_addr")


def test_invalid_utf8_target_and_command():
    bad = os.fsdecode(b"file:///tmp/\xff")
    r = waitfor("check", "-t", "1s", bad)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr and "internal" not in r.stderr, r.stderr
    r = waitfor("--init", "--", os.fsdecode(b"/bin/\xff"))
    assert r.returncode == 127 and "command not found" in r.stderr, r.stderr


# --------------------------------------------------------------------------- secrets in errors


@pytest.mark.parametrize("url", [
    "postgres://app:S3cr[t]PW@127.0.0.1/db", "redis://:S3cr[t]PW@127.0.0.1:6379",
    "amqp://u:S3cr[t]PW@127.0.0.1/", "https://u:S3cr[t]PW@127.0.0.1/", "nats://S3cr[t]PW@127.0.0.1:4222",
])
def test_a_password_with_brackets_is_never_echoed(url):
    r = waitfor("validate", "--offline", url)
    assert r.returncode == 2 and "S3cr" not in r.stderr + r.stdout, r.stderr


@pytest.mark.parametrize("key", ["sslpassword", "pass%77ord", "api-key", "access-token", "client_secret",
                                 "Credentials", "authToken"])
def test_secret_query_keys_are_masked_by_their_decoded_name(key):
    r = waitfor("validate", "--offline", f"https://127.0.0.1/x?{key}=LEAKME&user=bob")
    assert r.returncode == 0, r.stderr
    assert "LEAKME" not in r.stdout and "user=bob" in r.stdout, r.stdout
    r = waitfor("check", "-t", "1s", "--attempt-timeout", "300ms", f"http://127.0.0.1:1/x?{key}=LEAKME")
    assert "LEAKME" not in r.stdout + r.stderr


# --------------------------------------------------------------------------- control characters: one line


@pytest.mark.parametrize("where", ["key", "path"])
def test_control_characters_cannot_forge_a_log_line(tmp_path, where):
    if where == "key":
        path = yaml_file(tmp_path, '"x\\nwaitfor: all dependencies ready": 1\n')
    else:
        path = str(tmp_path / "x\nwaitfor: all dependencies ready")
    r = waitfor("validate", "-c", path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "\\n" in r.stderr


# --------------------------------------------------------------------------- closed and full streams


def test_closed_stderr_does_not_stop_the_app():
    with TcpServer() as srv:
        r = waitfor("--init", f"127.0.0.1:{srv.port}", "--", sys.executable, "-c", "print('app ran')",
                    stderr=subprocess.DEVNULL, capture_output=False, stdout=subprocess.PIPE, text=True,
                    env=clean_env(), timeout=30, preexec_fn=lambda: os.close(2))
    assert r.returncode == 0 and r.stdout == "app ran\n", (r.returncode, r.stdout)


@pytest.mark.parametrize("args", [["validate", "db:5432"], ["schema"], ["--help"]])
def test_full_stdout_is_one_error_and_a_closed_pipe_is_quiet(args):
    with open("/dev/full", "w") as full:
        r = waitfor(*args, stdout=full, stderr=subprocess.PIPE, text=True, env=clean_env(), timeout=30)
    assert r.returncode == 74 and "No space left" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    p = subprocess.run(f"{sys.executable} -m waitfor schema | head -c 10 >/dev/null; echo ${{PIPESTATUS[0]}}",
                       shell=True, executable="/bin/bash", capture_output=True, text=True, env=clean_env(),
                       timeout=30)
    assert p.stderr == "" and p.stdout.strip() in ("0", "141"), (p.stdout, p.stderr)


# --------------------------------------------------------------------------- subcommands, validate, exec failures


def test_subcommand_after_the_options(tmp_path):
    path = yaml_file(tmp_path, "dependencies: [db:5432]\n")
    r = waitfor("-c", path, "validate")
    assert r.returncode == 0 and "db:5432" in r.stdout, r.stderr
    one_error_line(waitfor("db:5432", "validate"), "subcommand goes before the targets")


def test_each_subcommand_has_its_own_help():
    r = waitfor("validate", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: waitfor validate")
    assert "--offline" in r.stdout and "--stop-timeout" not in r.stdout and "--probe-addr" not in r.stdout
    r = waitfor("run", "--help")
    assert "--stop-timeout" in r.stdout and "--offline" not in r.stdout


def test_validate_offline_checks_a_config_without_secret_files_or_drivers(tmp_path):
    path = yaml_file(tmp_path, "dependencies:\n  - url: postgres://app@db/app\n"
                               "    password_file: /run/secrets/missing\n")
    r = waitfor("validate", "-c", path)
    assert r.returncode == 2 and "password_file" in r.stderr
    r = waitfor("validate", "--offline", "-c", path)
    assert r.returncode == 0 and "postgres://app@db/app" in r.stdout, r.stderr
    one_error_line(waitfor("check", "--offline", "db:1"), "--offline applies only to validate")


def test_an_unset_variable_is_warned_once(tmp_path):
    path = yaml_file(tmp_path, "dependencies:\n  - url: http://127.0.0.1:1/\n"
                               "    headers: {Authorization: 'Bearer ${API_TOKEN}', X: '${API_TOKEN}'}\n")
    r = waitfor("validate", "-c", path)
    assert r.returncode == 0
    assert r.stderr.count("API_TOKEN variable is not set") == 1, r.stderr
    assert "API_TOKEN" not in waitfor("validate", "-q", "-c", path).stderr


def test_json_time_is_rfc3339_and_validate_prints_durations_as_written(tmp_path):
    import json
    import re

    r = waitfor("wait", "--log-format", "json", "-t", "300ms", "127.0.0.1:1")
    first = json.loads(r.stderr.splitlines()[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"]), first
    path = yaml_file(tmp_path, "timeout: 5m\ninterval: 50ms\ndependencies: [db:1]\n")
    out = waitfor("validate", "-c", path).stdout
    assert "timeout: 5m\n" in out and "interval: 50ms\n" in out, out


def test_validate_and_check_mask_a_url_alike():
    """One mask: a password is masked wherever it appears, also where it
    is the user name too, and validate, check and the logs show the same default name."""
    url = "amqp://guest:guest@127.0.0.1:1/"
    shown = waitfor("validate", "--offline", url).stdout
    checked = waitfor("check", "--attempt-timeout", "200ms", url).stdout
    logged = waitfor("wait", "-t", "300ms", url).stderr
    assert "name: amqp://***:***@127.0.0.1:1/\n" in shown and "url: amqp://***:***@127.0.0.1:1/\n" in shown, shown
    assert checked.startswith("FAIL amqp://***:***@127.0.0.1:1/: "), checked
    assert "not ready: amqp://***:***@127.0.0.1:1/: " in logged, logged
    assert "guest" not in shown + checked + logged
    shown = waitfor("validate", "--offline", "amqp://app:s3cret@127.0.0.1:1/").stdout
    checked = waitfor("check", "--attempt-timeout", "200ms", "amqp://app:s3cret@127.0.0.1:1/").stdout
    assert "name: amqp://app:***@127.0.0.1:1/\n" in shown and checked.startswith("FAIL amqp://app:***@"), checked


# --------------------------------------------------------------------------- one exec mapping


def _exec_cases(tmp_path):
    noexec = tmp_path / "noexec"
    noexec.write_text("#!/bin/sh\nexit 0\n")
    noexec.chmod(0o644)
    badformat = tmp_path / "badformat"
    badformat.write_bytes(b"\x7fELF\x00garbage")
    badformat.chmod(0o755)
    return {
        "ENOENT": (str(tmp_path / "missing"), 127, "command not found"),
        "EACCES": (str(noexec), 126, "Permission denied"),
        "ENOTDIR": ("/etc/passwd/x", 126, "Not a directory"),
        "ENOEXEC": (str(badformat), 126, "Exec format error"),
    }


@pytest.mark.parametrize("case", ["ENOENT", "EACCES", "ENOTDIR", "ENOEXEC"])
def test_exec_and_init_report_an_exec_failure_alike(tmp_path, case):
    if os.geteuid() == 0 and case == "EACCES":
        # root may execute a file with no x bit for anyone? No: execve needs one x bit even
        # for root; a 0644 file is EACCES for root too.
        assert not os.stat(_exec_cases(tmp_path)["EACCES"][0]).st_mode & stat.S_IXUSR
    path, code, words = _exec_cases(tmp_path)[case]
    results = [waitfor(mode, "--", path) for mode in ("--exec", "--init")]
    for r in results:
        assert r.returncode == code and words in r.stderr, (case, r.returncode, r.stderr)
    assert results[0].stderr == results[1].stderr


def test_repo_layout_has_no_stale_modules():
    """The old flat modules (before the config/wait/probes/supervise packages) are gone: one
    place for each thing."""
    for old in ("config.py", "engine.py", "waiting.py", "handover.py", "supervisor.py", "runtime.py",
                "status.py", "health.py", "effective.py", "masking.py", "sigstate.py", "signames.py", "log.py"):
        assert not (REPO / "waitfor" / old).exists(), old


def test_a_password_before_the_scheme_separator_is_not_echoed():
    """`user:S3cr3t@x@://` (hypothesis found it): its "scheme" is the password; it is no
    scheme (RFC 3986: a letter, then letters, digits, + - .), so it is not repeated."""
    r = waitfor("validate", "--offline", f"user:{_SECRET}@x@://")
    assert r.returncode == 2 and "no scheme before ://" in r.stderr, r.stderr
    assert "S3cr3t" not in r.stderr


@pytest.mark.parametrize("flag", ["--success-exit", "--failure-threshold", "--stop-signal", "--probe-addr"])
@pytest.mark.parametrize("digits", ["²", "١٥"])
def test_only_ascii_digits_are_numbers(flag, digits):
    """str.isdigit() is true of `²` (int() then fails with Python's own message) and of
    `١٥` (which int() reads as 15): neither is a number to waitfor, as to strtol."""
    value = f"127.0.0.1:{digits}" if flag == "--probe-addr" else digits
    r = waitfor(flag, value, "--", "true")
    assert r.returncode == 2 and r.stderr.startswith(f"waitfor: error: {flag}: "), r.stderr
    assert "int()" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
