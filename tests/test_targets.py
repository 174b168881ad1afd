"""Every target kind against real local listeners: TCP on 127.0.0.1 and ::1, http.server,
a Unix socket server, files, DNS of localhost, commands. Late-start cases start the
listener after a delay while the real CLI waits. No network mocks."""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from helpers.core import HttpServer, TcpServer, UnixServer, free_port, has_ipv6, waitfor
from waitfor import config
from waitfor.config import targets
from waitfor.probes import connect
from waitfor.probes.base import Broken, NotReady, Refused
from waitfor.wait.engine import attempt, make_probe

needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")


def dep(target):
    return targets.from_target(target, "test")


def ydep(tmp_path, body: str):
    """A dependency from a YAML mapping (for kind options and command:)."""
    from types import SimpleNamespace

    p = tmp_path / "deps.yaml"
    p.write_text("dependencies:\n  - " + body.replace("\n", "\n    ") + "\n")
    cfg = config.build(SimpleNamespace(config=str(p), mode="wait", command=None), {})
    return cfg.dependencies[0]


def probe(d, timeout=1.0):
    return attempt(d, make_probe(d), timeout)


def write_yaml(tmp_path, text, name="deps.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# --------------------------------------------------------------------------- tcp


def test_tcp_ready_and_refused():
    with TcpServer() as srv:
        assert "127.0.0.1" in probe(dep(f"tcp://127.0.0.1:{srv.port}"))
        assert "127.0.0.1" in probe(dep(f"127.0.0.1:{srv.port}"))  # bare host:port
    with pytest.raises(Refused, match="connection refused"):
        probe(dep(f"127.0.0.1:{free_port()}"))


@needs_ipv6
def test_tcp_ipv6_literal():
    with TcpServer(host="::1") as srv:
        assert "::1" in probe(dep(f"[::1]:{srv.port}"))
        assert "::1" in probe(dep(f"tcp://[::1]:{srv.port}"))
        r = waitfor("wait", "-t", "3", f"[::1]:{srv.port}")
        assert r.returncode == 0, r.stderr
    with pytest.raises(Refused):
        probe(dep(f"[::1]:{free_port(socket.AF_INET6, '::1')}"))


@needs_ipv6
@pytest.mark.parametrize("listen_on", ["127.0.0.1", "::1"])
def test_tcp_tries_every_address_of_a_name(monkeypatch, listen_on):
    """A name that resolves to ::1 and 127.0.0.1: a listener on either one is found.
    (Only the resolver is faked, as localhost resolves to one address here; the
    connects are real.)"""
    with TcpServer(host=listen_on) as srv:
        port = srv.port
        real = socket.getaddrinfo

        def both(host, p, *a, **k):
            if host == "both.test":
                return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", p, 0, 0)),
                        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p))]
            return real(host, p, *a, **k)

        monkeypatch.setattr(socket, "getaddrinfo", both)
        assert connect.connect("both.test", port, 1.0) == listen_on


def test_tcp_unresolvable_name_is_refused():
    with pytest.raises(Refused, match="cannot resolve"):
        probe(dep("tcp://no-such-host.invalid:5432"))


@pytest.mark.parametrize("target", ["tcp://slow.test:5432", "dns://slow.test", "http://slow.test/"])
def test_name_lookup_is_bounded_by_the_attempt_timeout(monkeypatch, target):
    """getaddrinfo has no timeout; a resolver that does not answer must not hold the
    attempt (and `check`) beyond --attempt-timeout. Only the resolver is faked."""
    real = socket.getaddrinfo

    def hung(host, *a, **k):
        if host == "slow.test" and not k.get("flags"):
            time.sleep(3)
        return real(host, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", hung)
    t0 = time.monotonic()
    with pytest.raises(NotReady, match="timed out"):
        probe(dep(target), timeout=0.3)
    assert time.monotonic() - t0 < 1.5  # not the 3 s the resolver takes


def test_tcp_late_start_cli():
    port = free_port()
    with TcpServer(port=port, delay=0.6):
        t0 = time.monotonic()
        r = waitfor("wait", "-t", "5", f"127.0.0.1:{port}")
        took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert 0.5 < took < 4
    assert "ready" in r.stderr
    assert r.stdout == ""


@needs_ipv6
def test_tcp_late_start_ipv6_cli():
    port = free_port(socket.AF_INET6, "::1")
    with TcpServer(host="::1", port=port, delay=0.5):
        r = waitfor("wait", "-t", "5", f"tcp://[::1]:{port}")
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- http


def test_http_2xx_ready_5xx_not_ready_refused():
    routes = {"/ok": (204, b"", {}), "/down": (503, b"starting", {}), "/teapot": (418, b"", {})}
    with HttpServer(routes) as srv:
        assert probe(dep(srv.url + "/ok")) == "HTTP 204"
        with pytest.raises(NotReady, match="503") as e:
            probe(dep(srv.url + "/down"))
        assert not isinstance(e.value, Refused)  # answered: backs off, not the fast poll
        with pytest.raises(NotReady, match="418"):
            probe(dep(srv.url + "/teapot"))
    with pytest.raises(Refused):
        probe(dep(f"http://127.0.0.1:{free_port()}/"))


def test_http_status_option_forms(tmp_path):
    routes = {"/teapot": (418, b"", {}), "/moved": (302, b"", {"Location": "/elsewhere"})}
    with HttpServer(routes) as srv:
        assert probe(ydep(tmp_path, f"url: {srv.url}/teapot\nstatus: 418")) == "HTTP 418"
        assert probe(ydep(tmp_path, f"url: {srv.url}/teapot\nstatus: [200, 418]")) == "HTTP 418"
        assert probe(ydep(tmp_path, f"url: {srv.url}/teapot\nstatus: 4xx")) == "HTTP 418"
        with pytest.raises(NotReady):
            probe(ydep(tmp_path, f"url: {srv.url}/teapot\nstatus: [200, 2xx]"))
        # redirects are not followed: 302 is not ready unless accepted
        with pytest.raises(NotReady, match="302"):
            probe(dep(srv.url + "/moved"))
        assert probe(ydep(tmp_path, f"url: {srv.url}/moved\nstatus: 3xx")) == "HTTP 302"
        assert [p for _, p, _ in srv.requests].count("/elsewhere") == 0


def test_http_body_regex(tmp_path):
    routes = {"/health": (200, b'{"status": "starting"}', {}), "/ready": (200, b'{"status": "UP"}', {})}
    with HttpServer(routes) as srv:
        with pytest.raises(NotReady, match="body does not match"):
            probe(ydep(tmp_path, f"url: {srv.url}/health\nbody: '\"status\": \"UP\"'"))
        assert probe(ydep(tmp_path, f"url: {srv.url}/ready\nbody: '\"status\": \"UP\"'")) == "HTTP 200"


def test_http_headers_method_and_basic_auth(tmp_path):
    with HttpServer({"/": (200, b"ok", {})}) as srv:
        d = ydep(tmp_path, f"url: {srv.url}/\nheaders: {{Authorization: Bearer tok-123, X-Probe: yes-please}}\nmethod: HEAD")
        assert probe(d) == "HTTP 200"
        method, path, headers = srv.requests[-1]
        assert method == "HEAD" and path == "/"
        assert headers["Authorization"] == "Bearer tok-123"
        assert headers["X-Probe"] == "yes-please"
        host = srv.url.split("//")[1]
        assert probe(dep(f"http://alice:s3cr%40t@{host}/?q=1")) == "HTTP 200"
        import base64

        _, path, headers = srv.requests[-1]
        assert path == "/?q=1"
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cr@t").decode()


def test_http_silent_server_times_out_within_the_attempt():
    """A listener that accepts (in the backlog) but never answers: NotReady after the
    attempt timeout, not a hang."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        t0 = time.monotonic()
        with pytest.raises(NotReady, match="timed out") as e:
            probe(dep(f"http://127.0.0.1:{silent.getsockname()[1]}/"), timeout=0.3)
        assert not isinstance(e.value, Refused)
        assert 0.25 < time.monotonic() - t0 < 1.5


@needs_ipv6
def test_http_ipv6():
    with HttpServer(host="::1") as srv:
        assert srv.url.startswith("http://[::1]:")
        assert probe(dep(srv.url + "/")) == "HTTP 200"


def test_http_late_start_and_late_ready_cli():
    """The port opens after 0.4 s, and the endpoint answers 503 for a while after that."""
    t0 = time.monotonic()
    status = lambda: 200 if time.monotonic() - t0 > 0.9 else 503  # noqa: E731
    with HttpServer({"/healthz": (status, b"", {})}, delay=0.4) as srv:
        r = waitfor("wait", "-t", "6", f"{srv.url}/healthz")
    assert r.returncode == 0, r.stderr
    assert "ready" in r.stderr


def _self_signed(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("no openssl to make a certificate")
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return key, crt


def test_https_ca_file_and_insecure(tmp_path):
    key, crt = _self_signed(tmp_path)
    with HttpServer() as srv:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(crt, key)
        srv.httpd.socket = ctx.wrap_socket(srv.httpd.socket, server_side=True)
        url = f"https://127.0.0.1:{srv.port}/"
        with pytest.raises(NotReady, match=r"TLS|certificate"):
            probe(dep(url))
        assert probe(ydep(tmp_path, f"url: {url}\nca_file: {crt}")) == "HTTP 200"
        assert probe(ydep(tmp_path, f"url: {url}\ninsecure: true")) == "HTTP 200"


# --------------------------------------------------------------------------- unix


def test_unix_ready_missing_and_not_a_socket(tmp_path):
    path = tmp_path / "app.sock"
    with pytest.raises(Refused):
        probe(dep(f"unix://{path}"))
    with UnixServer(path) as srv:
        assert probe(dep(f"unix://{path}")) == "accepted"
    assert srv.accepted >= 1
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(NotReady):
        probe(dep(f"unix://{plain}"))


def test_unix_late_start_cli(tmp_path):
    path = tmp_path / "late.sock"
    with UnixServer(path, delay=0.5):
        r = waitfor("wait", "-t", "5", f"unix://{path}")
    assert r.returncode == 0, r.stderr
    # the URL is shown as written (not unix:/path)
    assert f"unix://{path}" in r.stderr


# --------------------------------------------------------------------------- file


def test_file_exists_and_missing(tmp_path):
    f = tmp_path / "ready.flag"
    with pytest.raises(Refused, match="does not exist"):
        probe(dep(f"file://{f}"))
    f.write_text("")
    assert probe(dep(f"file://{f}")) == "exists"
    assert probe(dep(f"file://localhost{f}")) == "exists"
    (tmp_path / "with space").write_text("")
    assert probe(dep(f"file://{tmp_path}/with%20space")) == "exists"


def test_file_late_and_invert_cli(tmp_path):
    flag, lock = tmp_path / "flag", tmp_path / "lock"
    lock.write_text("")
    threading.Timer(0.4, flag.write_text, args=("",)).start()
    threading.Timer(0.5, lock.unlink).start()
    cfg = write_yaml(tmp_path, f"dependencies:\n  - file://{flag}\n  - url: file://{lock}\n    invert: true\n")
    r = waitfor("wait", "-t", "5", "-c", cfg)
    assert r.returncode == 0, r.stderr
    assert not lock.exists()


def test_invert_times_out_while_present(tmp_path):
    lock = tmp_path / "lock"
    lock.write_text("")
    cfg = write_yaml(tmp_path, f"dependencies:\n  - url: file://{lock}\n    invert: true\n")
    r = waitfor("wait", "-t", "400ms", "-c", cfg)
    assert r.returncode == 124, r.stderr
    assert "still exists" in r.stderr  # a file is not "reachable"


def test_invert_of_a_listener_says_still_reachable(tmp_path):
    """The wording is the kind's (Kind.STILL_THERE): a file "still exists", anything that
    answers is "still reachable"."""
    with TcpServer() as srv:
        cfg = write_yaml(tmp_path, f"dependencies:\n  - url: tcp://127.0.0.1:{srv.port}\n    invert: true\n")
        r = waitfor("wait", "-t", "400ms", "-c", cfg)
    assert r.returncode == 124, r.stderr
    assert "still reachable (invert: true)" in r.stderr, r.stderr


# --------------------------------------------------------------------------- dns


def test_dns_localhost_and_unknown():
    assert "127.0.0.1" in probe(dep("dns://localhost"))
    with pytest.raises(Refused, match="cannot resolve"):
        probe(dep("dns://no-such-name.invalid"))
    r = waitfor("wait", "-t", "3", "dns://localhost")
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- command


def test_command_exit_codes_and_no_shell(tmp_path):
    assert probe(ydep(tmp_path, "command: [true]".replace("true", '"true"'))) == "exit 0"
    with pytest.raises(NotReady, match=r"exit 3: last words"):
        probe(ydep(tmp_path, "command: [sh, -c, 'echo first; echo last words; exit 3']"))
    # no shell: `;` and `$HOME` reach the program as they are
    out = tmp_path / "argv"
    d = ydep(tmp_path, f"command: [{sys.executable}, -c, 'import sys; open(sys.argv[1], \"w\").write(sys.argv[2])', {out}, 'a;false $$HOME']")
    assert probe(d) == "exit 0"
    assert out.read_text() == "a;false $HOME"


def test_command_broken_and_timeout(tmp_path):
    with pytest.raises(Broken, match="not found"):
        probe(ydep(tmp_path, "command: [/nonexistent/program]"))
    script = tmp_path / "noexec.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(Broken, match="permission denied"):
        probe(ydep(tmp_path, f"command: [{script}]"))
    t0 = time.monotonic()
    with pytest.raises(NotReady, match="timed out"):
        probe(ydep(tmp_path, "command: [sleep, '5']"), timeout=0.3)
    assert time.monotonic() - t0 < 2


def test_command_timeout_kills_its_children(tmp_path):
    pidfile = tmp_path / "pid"
    d = ydep(tmp_path, f"command: [sh, -c, 'sleep 30 & echo $$! > {pidfile}; wait']")
    with pytest.raises(NotReady, match="timed out"):
        probe(d, timeout=0.4)
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:  # gone, or a zombie waiting for its new parent to reap it
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the command's child survived the attempt timeout")


def test_command_ready_when_it_exits_even_if_a_background_child_keeps_stdout(tmp_path):
    t0 = time.monotonic()
    assert probe(ydep(tmp_path, "command: [sh, -c, 'sleep 3 & echo started; exit 0']"), timeout=2) == "exit 0"
    assert time.monotonic() - t0 < 1.5  # not the 2 s attempt timeout


def test_command_runs_with_no_blocked_signals_cli(tmp_path):
    """The wait blocks SIGTERM & co. in waitfor (to sigtimedwait for them); the probe's
    program must not inherit that mask, or `timeout 0.3 ...` in a probe would not work."""
    status = tmp_path / "status"
    y = tmp_path / "c.yaml"
    y.write_text(f"dependencies:\n  - command: [sh, -c, 'grep -E \"^Sig(Blk|Ign)\" /proc/self/status > {status}']\n"
                 "  - {name: bounded, command: [timeout, '0.3', sleep, '5']}\n")
    t0 = time.monotonic()
    r = waitfor("check", "-c", y, "--attempt-timeout", "4")
    took = time.monotonic() - t0
    fields = dict(line.split(":\t") for line in status.read_text().splitlines())
    assert int(fields["SigBlk"], 16) == 0, fields
    assert int(fields["SigIgn"], 16) & ((1 << 12) | (1 << 24)) == 0, fields  # SIGPIPE, SIGXFSZ default
    assert r.returncode == 1 and "exit 124" in r.stdout + r.stderr
    assert took < 2.5  # timeout(1) could stop sleep: not the 4 s attempt timeout


def test_command_status_reaped_elsewhere(tmp_path):
    """With the runtime watch, the supervisor loop reaps every child (waitpid(-1)) in the
    process that probes: a status it hands over with deliver() counts, and a status lost
    is not taken for exit 0."""
    from waitfor.probes import command

    def started(code):
        with command._cond:
            pid = command.spawn(["sh", "-c", f"exit {code}"], 1)
            command._running.add(pid)
        return pid

    pid = started(3)
    status = os.waitpid(pid, 0)[1]  # "the supervisor" reaps it
    assert command.deliver(pid, status)
    assert command.wait(pid, 2) == 3
    assert not command.deliver(12345678, 0)  # not a probe's
    pid = started(0)
    os.waitpid(pid, 0)  # reaped, never handed over
    assert command.wait(pid, 2) == command.LOST


def test_command_late_ready_cli(tmp_path):
    flag = tmp_path / "flag"
    threading.Timer(0.4, flag.write_text, args=("",)).start()
    cfg = write_yaml(tmp_path, f"dependencies:\n  - command: [test, -e, {flag}]\n")
    r = waitfor("wait", "-t", "5", "-c", cfg)
    assert r.returncode == 0, r.stderr
