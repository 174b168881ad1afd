"""`command: [argv...]`: ready when the program exits 0. No shell is involved.

The program runs in its own session so that a time-out kills it with everything it
started, and its output is kept only to report why it is not ready.
"""

import os
import signal
import subprocess
import tempfile

from waitfor.probes.base import Broken, NotReady

PORT = None
OPTIONS = {}
TAIL = 4096  # bytes of output kept to say why it is not ready


def probe_for(dep):
    argv = list(dep.argv)

    def probe(timeout: float):
        # Output goes to a file, not a pipe: the probe is over when the program exits, even
        # if something it started in the background still holds its stdout open.
        with tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, restore_signals=True,
                )
            except FileNotFoundError:
                raise Broken(f"{argv[0]}: command not found") from None
            except PermissionError:
                raise Broken(f"{argv[0]}: permission denied") from None
            except OSError as e:
                raise Broken(f"{argv[0]}: {e.strerror}") from None
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
                raise NotReady(f"timed out after {timeout:.3g}s") from None
            if proc.returncode != 0:
                out.seek(0, os.SEEK_END)
                out.seek(max(0, out.tell() - TAIL))
                lines = out.read().decode(errors="replace").strip().splitlines()
                why = f": {lines[-1][:200]}" if lines else ""
                code = proc.returncode
                status = f"killed by signal {-code}" if code < 0 else f"exit {code}"
                raise NotReady(f"{status}{why}")
        return "exit 0"

    return probe
