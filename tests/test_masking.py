"""Secrets never reach stdout or stderr: URL passwords, header values (Authorization,
Cookie), secret query parameters, password files, DSNs in a command's arguments; in
validate, in waiting and timeout logs, in errors, in check, in JSON logs."""

import json

import pytest

from helpers.core import HttpServer, clean_env, free_port, waitfor
from waitfor import config
from waitfor.secrets import MASK, mask_url, mask_urls_in, redact

PW = "hunter2-Zq9"
TOKEN = "tok-8f3a1c"
COOKIE = "sess-77aa9"


def no_secret(*texts, secrets=(PW, TOKEN, COOKIE)):
    for t in texts:
        for s in secrets:
            assert s not in t, f"secret {s!r} leaked in:\n{t}"


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("url,masked", [
    ("tcp://u:pw1@h:1", "tcp://u:***@h:1"),
    ("postgres://app:s%40cret@db:5432/app?sslmode=disable", "postgres://app:***@db:5432/app?sslmode=disable"),
    ("redis://:pw1@h:6379/0", "redis://:***@h:6379/0"),
    ("http://u:p@ss@h/x", "http://u:***@h/x"),
    ("http://h/x?token=abc&page=2&api_key=k&password=p", "http://h/x?token=***&page=2&api_key=***&password=***"),
    ("http://user@h/", "http://***@h/"),  # a lone userinfo on http(s) is a token (https://TOKEN@host)
    ("postgres://user@h/db", "postgres://user@h/db"),  # elsewhere it is a user name
    ("http://h:8080/healthz", "http://h:8080/healthz"),
    ("unix:///run/app.sock", "unix:///run/app.sock"),  # kept as written, not unix:/run/app.sock
    ("unix:///run/app.sock?token=t", "unix:///run/app.sock?token=***"),
    ("file:///tmp/x", "file:///tmp/x"),
    ("http://u:pw1@[::1", "http://u:***@[::1"),  # unparsable: still masked
])
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_mask_urls_in_text():
    text = "pg_isready --dsn=postgres://bob:pw1@db/app -h x http://h/?token=zz"
    assert mask_urls_in(text) == "pg_isready --dsn=postgres://bob:***@db/app -h x http://h/?token=***"


def test_redact_longest_first_and_short_ones_left():
    assert redact("a secretlong b secret c", {"secret", "secretlong"}) == f"a {MASK} b {MASK} c"
    assert redact("ab", {"ab"}) == "ab"  # too short to mask without wrecking the message


def test_dependency_secrets(tmp_path):
    from types import SimpleNamespace

    pwfile = tmp_path / "pw"
    pwfile.write_text("from-a-file-77\n")
    y = tmp_path / "d.yaml"
    y.write_text(
        "dependencies:\n"
        f"  - url: http://bob:{PW}@h/?access_token={TOKEN}\n"
        f"    headers: {{Authorization: 'Bearer {TOKEN}', Cookie: 'sid={COOKIE}'}}\n"
        f"  - command: [psql, 'postgres://u:{PW}@db/app']\n"
        "  - url: postgres://app@db/app\n"
        f"    password_file: {pwfile}\n"
    )
    http, cmd, pg = config.build(SimpleNamespace(config=str(y), mode="wait", command=None), {}).dependencies
    assert {PW, TOKEN, f"Bearer {TOKEN}", f"sid={COOKIE}"} <= http.secrets
    import base64

    assert base64.b64encode(f"bob:{PW}".encode()).decode() in http.secrets
    assert PW in cmd.secrets
    no_secret(cmd.display, cmd.name, http.display, http.name)
    assert "from-a-file-77" in pg.secrets


# --------------------------------------------------------------------------- black box


def secret_yaml(tmp_path, port):
    y = tmp_path / "secret.yaml"
    y.write_text(
        "dependencies:\n"
        f"  - url: http://bob:{PW}@127.0.0.1:{port}/echo?token={TOKEN}\n"
        f"    headers: {{Authorization: 'Bearer {TOKEN}', Cookie: '{COOKIE}'}}\n"
        f"  - command: [sh, -c, 'echo \"cannot connect to postgres://bob:{PW}@db/app\"; exit 1', 'postgres://bob:{PW}@db']\n"
        f"  - tcp://bob:{PW}@127.0.0.1:{free_port()}\n"
    )
    return y


def test_validate_masks_everything(tmp_path):
    y = secret_yaml(tmp_path, 1)
    r = waitfor("validate", "-c", y, f"http://x:{PW}@h/")
    assert r.returncode == 0, r.stderr
    no_secret(r.stdout, r.stderr)
    assert "***" in r.stdout and "Authorization" in r.stdout


def test_timeout_report_masks_and_names_each_dep(tmp_path):
    """The server echoes the Authorization and Cookie headers it got in its reason phrase."""
    srv = HttpServer({})
    from helpers.core import Handler

    class Echo(Handler):
        def do_GET(self):
            self.send_response(503, f"{self.headers.get('Authorization')} {self.headers.get('Cookie')}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with srv:
        srv.httpd.RequestHandlerClass = Echo
        y = secret_yaml(tmp_path, srv.port)
        for fmt in ("text", "json"):
            r = waitfor("wait", "-c", y, "-t", "600ms", "--log-format", fmt)
            assert r.returncode == 124, r.stderr
            no_secret(r.stdout, r.stderr)
            assert r.stdout == ""
            assert "HTTP 503" in r.stderr  # the last error of each is said
            assert "exit 1" in r.stderr and "connection refused" in r.stderr
            if fmt == "json":
                lines = [json.loads(line) for line in r.stderr.splitlines()]
                assert all({"time", "level", "msg"} <= set(o) for o in lines)
                assert sum(o["msg"].startswith("not ready:") for o in lines) == 3
            else:
                assert r.stderr.count("not ready: ") >= 3
        r = waitfor("check", "-c", y)
        assert r.returncode == 1
        no_secret(r.stdout, r.stderr)


@pytest.mark.parametrize("argv", [
    [f"http://bob:{PW}@h:99999/"],
    [f"tcp://bob:{PW}@h"],
    [f"ftp://bob:{PW}@h:21"],
    [f"http://h:99999/?token={TOKEN}"],
])
def test_errors_mask_secrets(argv):
    r = waitfor("validate", *argv)
    assert r.returncode == 2 and r.stderr.startswith("waitfor: error: ")
    no_secret(r.stdout, r.stderr)


@pytest.mark.parametrize("target", [
    "http://bob:Sx/hunter77@h/x", "postgres://bob:Sx#hunter77@h/db", "mysql://bob:Sx?hunter77@h/db",
])
def test_unencoded_password_does_not_leak_through_the_port_error(target):
    """A / # or ? in a password ends the netloc early; the rest looks like a bad port."""
    r = waitfor("validate", target)
    assert r.returncode == 2 and "%40" in r.stderr, r.stderr  # the hint to encode it
    assert "hunter77" not in r.stderr and "Sx" not in r.stderr, r.stderr


def test_env_targets_errors_mask_secrets():
    r = waitfor("validate", env=clean_env(WAITFOR_TARGETS=f"ok:1 tcp://u:{PW}@h"))
    assert r.returncode == 2 and "WAITFOR_TARGETS" in r.stderr
    no_secret(r.stderr)


def test_yaml_error_masks_secret(tmp_path):
    y = tmp_path / "d.yaml"
    y.write_text(f"dependencies:\n  - url: http://bob:{PW}@h:99999/\n    headers: {{Authorization: Bearer {TOKEN}}}\n")
    r = waitfor("validate", "-c", y)
    assert r.returncode == 2 and "d.yaml:2" in r.stderr
    no_secret(r.stderr)


def test_secret_from_environment_is_masked(tmp_path):
    y = tmp_path / "d.yaml"
    y.write_text("dependencies:\n  - url: 'tcp://app:${DB_PASSWORD:?}@127.0.0.1:1'\n")
    r = waitfor("wait", "-c", y, "-t", "300ms", env=clean_env(DB_PASSWORD=PW))
    assert r.returncode == 124
    no_secret(r.stderr)
    r = waitfor("validate", "-c", y, env=clean_env(DB_PASSWORD=PW))
    assert r.returncode == 0
    no_secret(r.stdout)
