"""The cost of running `command:` checks as USER (issue 16 A1): one attempt of a command
probe (`true`) started with posix_spawn as root (no `user:`), side by side with the same
started by fork + exec as nobody (`user: nobody`; posix_spawn cannot change ids). Both
include the attempt's own work (output pipe, the sweep for escaped descendants). Median
and p90 of --runs attempts, in one process, as the runtime watch would run them.
Needs root. Run from the repository: PYTHONPATH=. python3 bench/command_as_user.py
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median, pct, save, table

from waitfor import process
from waitfor.config.model import Dependency
from waitfor.probes import command


def attempts(n):
    probe = command.probe_for(Dependency("true", "command", "command:true", argv=("true",)))
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        probe(5.0)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (it switches to nobody)")
    root = attempts(a.runs)
    process.run_children_as((65534, 65534, ()), "/nonexistent")
    user = attempts(a.runs)
    rows = [["as root (posix_spawn)", f"{median(root):.2f}", f"{pct(root, 90):.2f}"],
            ["as nobody (fork + exec)", f"{median(user):.2f}", f"{pct(user, 90):.2f}"]]
    print(table(["one `true` attempt", "median ms", "p90 ms"], rows))
    save("command_as_user", {"root_median_ms": median(root), "user_median_ms": median(user)})


if __name__ == "__main__":
    main()
