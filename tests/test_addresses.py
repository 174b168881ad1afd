"""A name with several addresses: every address gets its chance within one attempt.

The addresses are real: each test runs waitfor in a network namespace it creates
(`unshare -n -m`), with loopback up, nftables dropping SYNs to 127.0.1.0/24 (a host that
never answers, as a dead node behind a load balancer's DNS name does), a listener on
127.0.0.2, and a private /etc/hosts bound over the real one in its own mount namespace, so
that `two.test` and `many.test` resolve through glibc as any name would.
"""

import os
import shutil
import subprocess
import sys

import pytest

from helpers.core import REPO, clean_env
from waitfor.probes import connect

PORT = 8080  # the namespace is new: nothing else listens in it

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nft") or not shutil.which("ip"),
    reason="needs root, unshare, ip and nft to build a network namespace with a dropping host")

HOSTS = "\n".join([
    "127.0.0.1 localhost",
    "127.0.1.1 two.test",  # drops SYNs: first, as getaddrinfo returns it
    "127.0.0.2 two.test",  # accepts
    *[f"127.0.1.{i} many.test" for i in range(1, 50)],  # 49 that drop SYNs ...
    "127.0.0.2 many.test",  # ... then the one that accepts
    "",
])

SETUP = """set -e
ip link set lo up
nft add table inet t
nft add chain inet t out '{ type filter hook output priority 0; }'
nft add rule inet t out ip daddr 127.0.1.0/24 tcp flags syn drop
mount --bind "$HOSTS_FILE" /etc/hosts
echo namespace ready >&2
set +e
"""


def in_namespace(tmp_path, script: str, timeout: int = 60) -> subprocess.CompletedProcess:
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    env = clean_env(HOSTS_FILE=str(hosts), PY=sys.executable, PORT=str(PORT))
    proc = subprocess.run(["unshare", "-n", "-m", "sh", "-c", SETUP + script], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)
    if "namespace ready" not in proc.stderr:  # no user namespaces, no nf_tables, ...
        pytest.skip(f"cannot build the namespace here: {proc.stderr.strip()[-300:]}")
    return proc


LISTEN = '"$PY" -m http.server --bind 127.0.0.2 "$PORT" >/dev/null 2>&1 & L=$!\n'
WAIT = '"$PY" -m waitfor wait -t 10s --attempt-timeout 2s '


@needs_root
@pytest.mark.parametrize("name", ["two.test", "many.test"])
@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_later_address_that_accepts_is_found_past_one_that_drops_syns(tmp_path, name, scheme):
    """Before: the first address took the whole attempt, every attempt: exit 124."""
    proc = in_namespace(tmp_path, LISTEN + WAIT + f'{scheme}://{name}:"$PORT"{"/" if scheme == "http" else ""}; rc=$?; kill $L; exit $rc')
    assert proc.returncode == 0, proc.stderr


@needs_root
def test_a_driver_step_races_the_addresses_too(tmp_path):
    """The TCP-first step of the driver kinds and http's own connect: connect.connect, in the
    same process, against the same namespace."""
    code = ("import time; from waitfor.probes.connect import connect; t = time.monotonic(); "
            "print(connect('many.test', 8080, 2.0)); print(time.monotonic() - t < 2.0)")
    proc = in_namespace(tmp_path, LISTEN + f'sleep 0.5; "$PY" -c "{code}"; rc=$?; kill $L; exit $rc')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["127.0.0.2", "True"], proc.stdout


@needs_root
@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_when_no_address_answers_the_reason_names_them(tmp_path, scheme):
    """50 silent addresses: one line that names the first and counts the rest."""
    proc = in_namespace(tmp_path, '"$PY" -m waitfor check --attempt-timeout 1s '
                                  f'{scheme}://many.test:"$PORT"/')
    assert proc.returncode == 1, proc.stderr
    assert "connect timed out (127.0.1.1:8080 and 48 more)" in proc.stdout + proc.stderr, proc


def test_the_stagger_starts_every_address_within_the_attempt():
    assert connect.stagger(2.0, 1) == connect.STAGGER  # RFC 8305's 250 ms when there is time
    assert connect.stagger(2.0, 49) == pytest.approx(2.0 / 50)
    assert connect.stagger(0.001, 100) == connect.MIN_STAGGER  # never under RFC 8305's 10 ms
    # 49 more addresses, each started after the stagger of what is left: all start in time
    left, started = 2.0, 0.0
    for pending in range(49, 0, -1):
        step = connect.stagger(left, pending)
        started, left = started + step, left - step
    assert started < 2.0 and left > 0


def test_the_families_alternate():
    v6 = [(10, (f"::{i}", 1, 0, 0)) for i in range(1, 4)]
    v4 = [(2, (f"10.0.0.{i}", 1)) for i in range(1, 3)]
    got = connect.order(v6 + v4)
    assert [a[1][0] for a in got] == ["::1", "10.0.0.1", "::2", "10.0.0.2", "::3"]
    assert connect.order(v4) == v4
