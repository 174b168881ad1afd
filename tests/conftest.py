"""Shared fixtures. Helpers live in the tests/helpers/ package (pytest's `pythonpath` setting
in pyproject.toml puts tests/ on the path): `helpers.core` (running waitfor, environments,
ports, local listeners), `helpers.pid1` (PID namespaces and the apps that report what they
saw), `helpers.servers` (real database and broker servers, hostile servers). A test module
never imports from another test module: what two of them need goes here or in helpers/.
tests/README.md maps behaviour to test file."""

from __future__ import annotations

import textwrap

import pytest

from helpers.core import HttpServer, Listener, TcpServer

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test extra; only the fuzz tests need it
    pass
else:
    # Fuzz tests are bounded in time: a fixed number of examples, no per-example deadline
    # (each example may start a waitfor process on a noisy machine).
    settings.register_profile(
        "waitfor", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    settings.load_profile("waitfor")


@pytest.fixture
def tcp_server():
    """A real listener on 127.0.0.1 that accepts (and counts) connections."""
    with TcpServer() as s:
        yield s


@pytest.fixture
def http_server():
    """A real HTTP server on 127.0.0.1 (see helpers.core.HttpServer for its routes)."""
    with HttpServer() as s:
        yield s


@pytest.fixture
def listener():
    """A real listener on 127.0.0.1 that the test can close (and open again) on the same port."""
    lst = Listener().open()
    yield lst
    lst.close()


@pytest.fixture
def config_file(tmp_path):
    """write(text) -> path of a YAML config with that (dedented) text."""
    count = iter(range(1000))

    def write(text: str, name: str | None = None):
        path = tmp_path / (name or f"waitfor-{next(count)}.yaml")
        path.write_text(textwrap.dedent(text))
        return path

    return write
