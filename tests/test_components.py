"""`waitfor --version --verbose` (issue 18) from the pip install: the interpreter, its
OpenSSL, the C library and waitfor's installed requirements with their versions (the
bundles' side, against their SBOM, is in tests/test_bundle.py)."""

import os
import platform
import ssl
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def version(*flags):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITFOR_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "waitfor", *flags], capture_output=True, text=True, env=env,
                          timeout=60)


@pytest.mark.parametrize("flags", [("--version", "--verbose"), ("--verbose", "--version"), ("-v", "--version")])
def test_version_verbose_lists_the_components(flags):
    p = version(*flags)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0].startswith("waitfor ") and "pip install in" in out[0] and platform.machine() in out[0]
    assert f"cpython {platform.python_version()}" in out
    assert f"openssl {ssl.OPENSSL_VERSION}" in out
    assert any(line.startswith("libc ") for line in out)
    packages = {tuple(line.split()) for line in out[out.index("python packages:") + 1:]}
    for dist in ("psutil", "tenacity", "PyYAML"):  # the core requirements, always installed
        assert (dist, metadata.version(dist)) in packages, packages
    # what waitfor itself asked for only: no test tools, no unrelated packages of the environment
    names = {name.lower() for name, _ in packages}
    assert not {"pytest", "hypothesis", "ruff", "mypy"} & names, names
    assert "shared libraries:" not in out  # a pip install uses the system's


def test_plain_version_is_one_line():
    p = version("--version")
    assert p.returncode == 0 and p.stdout.count("\n") == 1 and p.stdout.startswith("waitfor "), p.stdout
