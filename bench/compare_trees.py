"""Before and after a change, side by side in one run: start-up and the idle init's RSS of
two waitfor source trees on the same interpreter (issue 8: "no worse than before").

    python3 bench/compare_trees.py BEFORE_TREE AFTER_TREE [--runs 60] [--venv]

BEFORE_TREE is e.g. a `git worktree add /tmp/before <commit>`. Each tree runs as
`PYTHONPATH=TREE python3 TREE/bin/waitfor ...`, so both pay the same interpreter start.
With --venv, each tree is installed in a clean venv of this interpreter (bench/make_venv.sh,
SRC=TREE) and runs as VENV/bin/waitfor, as a container image has it: no .pth files of the
development interpreter; the floor is then the venv's `python -c pass`.

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
from _common import PY, drain, free_port, listener, median, table, tree_venv


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


def idle_rss_kib(waitfor, env, port):
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", *waitfor,
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
    ap.add_argument("--venv", action="store_true", help="install each tree in a clean venv first")
    args = ap.parse_args()
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("WAITFOR_", "PYTHON"))}
    waitfor, envs, floor_py = {}, {}, PY
    for name, tree in trees.items():
        if args.venv:
            venv = tree_venv(tree, name)
            waitfor[name], envs[name], floor_py = [f"{venv}/bin/waitfor"], base_env, f"{venv}/bin/python"
        else:
            waitfor[name], envs[name] = [PY, f"{tree}/bin/waitfor"], dict(base_env, PYTHONPATH=tree)
    port = free_port()
    sock = listener(port)
    threading.Thread(target=drain, args=(sock,), daemon=True).start()
    tmp = tempfile.mkdtemp()
    deps = os.path.join(tmp, "deps.yaml")
    with open(deps, "w") as f:
        f.write(f"dependencies:\n  - tcp://127.0.0.1:{port}\n")
    commands = {}
    for name in trees:
        commands[f"{name}: -- /bin/true"] = ([*waitfor[name], "--", "/bin/true"], envs[name])
        commands[f"{name}: -c deps.yaml -- /bin/true"] = ([*waitfor[name], "-c", deps, "--", "/bin/true"], envs[name])
    commands["python -c pass"] = ([floor_py, "-c", "pass"], base_env)
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
        rss = {name: idle_rss_kib(waitfor[name], envs[name], port) for name in trees}
        print(f"== idle init RSS after a TCP wait (KiB): before {rss['before']}, after {rss['after']}")
    sock.close()


if __name__ == "__main__":
    main()
