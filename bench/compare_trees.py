"""Before and after a change, side by side in one run: start-up and the idle init's RSS of
two waitfor source trees on the same interpreter (issue 8: "no worse than before").

    python3 bench/compare_trees.py BEFORE_TREE AFTER_TREE [--runs 60]

BEFORE_TREE is e.g. a `git worktree add /tmp/before <commit>`. Each tree runs as
`PYTHONPATH=TREE python3 TREE/bin/waitfor ...`, so both pay the same interpreter start.

- start-up: `waitfor run -- /bin/true`, and `waitfor run -c deps.yaml -- /bin/true` with one
  TCP dependency that a listener of this script holds open; commands interleaved run by run
  in a shuffled order (see startup.py); median wall and CPU time, ratio after/before.
- idle RSS: each tree as PID 1 of a new PID namespace (root), after waiting for that TCP
  dependency: `unshare --pid --fork --mount-proc waitfor 127.0.0.1:PORT -- sleep 1000`;
  VmRSS of the init once it has re-exec'd into the lean supervisor and settled (1 s).
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PY, free_port, listener, median, table


def drain(sock):
    while True:
        try:
            c, _ = sock.accept()
            c.close()
        except OSError:
            return


def run_once(argv, env):
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)} -> {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime


def children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def idle_rss_kib(tree, env, port):
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", PY, f"{tree}/bin/waitfor",
                          f"127.0.0.1:{port}", "--", "sleep", "1000"], env=env,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        init = None
        while time.monotonic() < deadline:
            kids = children(p.pid)
            if kids:
                init = kids[0]
                try:
                    with open(f"/proc/{init}/cmdline", "rb") as f:
                        cmd = f.read()
                except OSError:
                    cmd = b""
                # re-exec'd: the lean supervisor (retitled `waitfor -- ...` since issue 8)
                if cmd.startswith(b"waitfor\0--") or b"\0-I\0-S\0" in cmd:
                    break
            time.sleep(0.05)
        time.sleep(1.0)
        with open(f"/proc/{init}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    finally:
        p.kill()
        p.wait()
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--runs", type=int, default=60)
    args = ap.parse_args()
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    port = free_port()
    sock = listener(port)
    threading.Thread(target=drain, args=(sock,), daemon=True).start()
    tmp = tempfile.mkdtemp()
    deps = os.path.join(tmp, "deps.yaml")
    with open(deps, "w") as f:
        f.write(f"dependencies:\n  - tcp://127.0.0.1:{port}\n")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("WAITFOR_", "PYTHON"))}
    commands = {}
    for name, tree in trees.items():
        env = dict(base_env, PYTHONPATH=tree)
        commands[f"{name}: -- /bin/true"] = ([PY, f"{tree}/bin/waitfor", "--", "/bin/true"], env)
        commands[f"{name}: -c deps.yaml -- /bin/true"] = (
            [PY, f"{tree}/bin/waitfor", "-c", deps, "--", "/bin/true"], env)
    commands["python -c pass"] = ([PY, "-c", "pass"], base_env)
    results = {k: [] for k in commands}
    for _ in range(3):  # warm the page cache and the .pyc files
        for argv, env in commands.values():
            run_once(argv, env)
    for _ in range(args.runs):
        order = list(commands)
        random.shuffle(order)
        for k in order:
            results[k].append(run_once(*commands[k]))
    rows = []
    floor = median([w for w, _ in results["python -c pass"]])
    for k, vals in results.items():
        wall, cpu = median([w for w, _ in vals]), median([c for _, c in vals])
        rows.append([k, f"{wall * 1000:.1f}", f"{cpu * 1000:.1f}", f"{wall / floor:.2f}x"])
    print(f"== start-up, {args.runs} interleaved runs each, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(table(["command", "wall ms (median)", "cpu ms (median)", "x python -c pass"], rows))
    for what in ("-- /bin/true", "-c deps.yaml -- /bin/true"):
        b = median([w for w, _ in results[f"before: {what}"]])
        a = median([w for w, _ in results[f"after: {what}"]])
        print(f"after/before {what}: {a / b:.2f}x")
    if os.geteuid() == 0:
        rss = {name: idle_rss_kib(tree, dict(base_env, PYTHONPATH=tree), port) for name, tree in trees.items()}
        print(f"== idle init RSS after a TCP wait (KiB): before {rss['before']}, after {rss['after']}")
    sock.close()


if __name__ == "__main__":
    main()
