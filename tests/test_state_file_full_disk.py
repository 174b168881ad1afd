"""The state file on a full disk (issue 16 D17): a write that fails leaves no
`state.json.<pid>.tmp` behind. A real full device: a 4 KiB tmpfs, filled, mounted in a
mount namespace of the test's own (`unshare -m`, root only), never the machine's /tmp."""

import os
import subprocess
import sys

import pytest

from helpers.core import REPO, clean_env

# Mount, fill, run waitfor (its state file on the full tmpfs), then list what is left there:
# the tmpfs is visible inside the namespace only.
SCRIPT = """
mount -t tmpfs -o size=4k tmpfs "$0" || exit 99
head -c 8192 /dev/zero > "$0/fill" 2>/dev/null
"$@"
echo "code $?"
ls -A "$0"
"""


def test_a_full_disk_leaves_no_temporary_state_file(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    argv = ["unshare", "-m", "sh", "-c", SCRIPT, str(tmp_path),
            sys.executable, "-m", "waitfor", "--init", "--watch-interval", "100ms", "file:///",
            "--", "sleep", "0.5"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                       env=clean_env(PYTHONPATH=str(REPO), WAITFOR_STATE_FILE=f"{tmp_path}/state.json"))
    if r.returncode == 99 or "unshare" in r.stderr:
        pytest.skip(f"no mount namespace with a tmpfs here: {r.stderr.strip()}")
    lines = r.stdout.split()
    assert lines[:2] == ["code", "0"], r.stdout + r.stderr
    assert lines[2:] == ["fill"], f"left on the full disk: {lines[2:]}"
