"""The README's Dockerfile snippets work as copied.

Each ```dockerfile block of README.md and docker/README.md with a HEALTHCHECK is run as a container would run
it: its ENV lines become the environment, its ENTRYPOINT (with a sleeping app for CMD)
runs as PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`), and its
HEALTHCHECK command runs beside it with the same environment, as Docker's `exec` does.
The only change to the text is where the config file lives (a temporary file for
/etc/waitfor.yaml: the test does not write into the machine's /etc)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from helpers.core import REPO, WAITFOR, TcpServer, clean_env
from helpers.pid1 import NS, pid_namespace_unavailable

pytestmark = pytest.mark.pid1


def dockerfile_blocks():
    """Every Dockerfile snippet of README.md and docker/README.md that has a HEALTHCHECK."""
    found = []
    for doc in ("README.md", "docker/README.md"):
        text = (REPO / doc).read_text()
        found += [b for b in re.findall(r"```dockerfile\n(.*?)```", text, re.S)
                  if "HEALTHCHECK" in b and "ENTRYPOINT" in b]
    return found


def parse(block: str) -> dict:
    out: dict = {"env": {}}
    for line in block.splitlines():
        word, _, rest = line.partition(" ")
        if word == "ENV":
            for pair in rest.split():
                key, _, value = pair.partition("=")
                out["env"][key] = os.path.expandvars(value)  # ENV PATH=/opt/waitfor:$PATH
        elif word in ("ENTRYPOINT", "CMD"):
            out[word] = json.loads(rest)
        elif word == "HEALTHCHECK":
            out[word] = json.loads(rest.split("CMD", 1)[1])
    return out


def test_the_readme_has_such_snippets():
    assert len(dockerfile_blocks()) >= 4
    assert "HEALTHCHECK" in (REPO / "README.md").read_text().split("```dockerfile", 2)[1], \
        "the first Dockerfile snippet is the one a new user copies"


@pytest.mark.parametrize("index", range(len(dockerfile_blocks())))
def test_a_dockerfile_snippet_is_healthy_as_copied(tmp_path, index):
    why = pid_namespace_unavailable()
    if why:
        pytest.skip(why)
    block = dockerfile_blocks()[index]
    spec = parse(block)
    assert [os.path.basename(spec["HEALTHCHECK"][0]), spec["HEALTHCHECK"][1]] == ["waitfor", "health"], block
    config = tmp_path / "waitfor.yaml"

    def here(words):
        return [w.replace("/etc/waitfor.yaml", str(config)) for w in words]

    waitfor_cmd = WAITFOR
    with TcpServer() as srv:
        config.write_text(f"dependencies: [tcp://127.0.0.1:{srv.port}]\n")
        env = clean_env(**{k: here([v])[0] for k, v in spec["env"].items()},
                        WAITFOR_STATE_FILE=str(tmp_path / "state.json"))
        entry = here(spec["ENTRYPOINT"])
        assert os.path.basename(entry[0]) == "waitfor", block
        proc = subprocess.Popen([*NS, *waitfor_cmd, *entry[1:], "sleep", "30"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            health = here(spec["HEALTHCHECK"])
            deadline = time.monotonic() + 15
            while True:
                r = subprocess.run([*waitfor_cmd, *health[1:]], env=env, capture_output=True, text=True, timeout=20)
                if r.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                    break
                time.sleep(0.2)
            assert r.returncode == 0, (block, r.stdout, r.stderr)
            assert r.stdout.startswith("ok "), r.stdout
            assert proc.poll() is None, proc.communicate()
        finally:
            proc.kill()
            proc.communicate(timeout=10)
