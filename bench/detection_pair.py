"""Detection of two waitfor trees side by side: both wait for the same TCP port at once
(so both meet the same load), a listener opens after a random 0.2-2.0 s, and each one's
command (`date +%s.%N`) says when it started. Prints each trial and the medians.

    python3 bench/detection_pair.py BEFORE_TREE AFTER_TREE [--trials 20]
"""

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PY, free_port


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--trials", type=int, default=20)
    a = ap.parse_args()
    trees = {"before": os.path.abspath(a.before), "after": os.path.abspath(a.after)}
    res = {name: [] for name in trees}
    for _ in range(a.trials):
        port = free_port()
        procs = {name: subprocess.Popen([PY, os.path.join(tree, "bin", "waitfor"), "run", "-q", "-t", "10s",
                                         f"127.0.0.1:{port}", "--", "date", "+%s.%N"],
                                        env=dict(os.environ, PYTHONPATH=tree), stdout=subprocess.PIPE)
                 for name, tree in trees.items()}
        delay = random.uniform(0.2, 2.0)
        time.sleep(delay)
        listener = socket.create_server(("127.0.0.1", port))
        t_listen = time.time()
        for name, p in procs.items():
            out, _ = p.communicate(timeout=20)
            res[name].append((float(out) - t_listen) * 1000)
        listener.close()
        print(f"delay {delay:.2f} s: " + ", ".join(f"{n} {v[-1]:.1f} ms" for n, v in res.items()), flush=True)
    for name, v in res.items():
        print(f"{name}: median {statistics.median(v):.1f} ms, max {max(v):.1f} ms ({trees[name]})")


if __name__ == "__main__":
    main()
