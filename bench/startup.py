"""Target 1, start-up cost.

  waitfor run -- /bin/true                         <= 1.5x  python -c pass
  waitfor run -c deps.yaml -- /bin/true            <= 3x    python -c pass
                                                   <= 1.15x python -c "import yaml, socket, threading"
      (deps.yaml: one TCP dependency, a listener this script holds open on 127.0.0.1)

Peers shown for context: wait-for-it on the same ready port, `python -I -S -c pass`
(the floor of any Python program), /bin/true (the floor of any process).

By default an own loop: posix_spawn + wait4 of each command, the commands interleaved run
by run in a shuffled order, so that load from other work on the machine falls on all of
them alike (hyperfine measures one command after the other, which on a shared machine
lets a burst of load land on one command only). --hyperfine uses `hyperfine -N` instead
(in --rounds interleaved rounds). Reports median and p90 of wall time, the median CPU
time (user+sys, from wait4: much less sensitive to other load), and ratios of medians.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PY, WAITFOR, drain, free_port, listener, median, pct, save, table, verdict


def run_hyperfine(argv, runs, warmup):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run(["hyperfine", "-N", "-w", str(warmup), "-r", str(runs), "--export-json", f.name,
                        "--style", "none", " ".join(argv)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        data = json.load(open(f.name))
    res = data["results"][0]
    if any(c != 0 for c in res.get("exit_codes", [0])):
        raise SystemExit(f"non-zero exit from {argv}")
    cpu = (res["user"] + res["system"]) * 1000  # hyperfine exports only the mean CPU time
    return [t * 1000 for t in res["times"]], [cpu] * len(res["times"])


def spawn_once(argv):
    """Wall ms and CPU ms (user+sys of the process and what it exec'd) of one run."""
    actions = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status, ru = os.wait4(pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    if status != 0:
        raise SystemExit(f"exit status {status} from {argv}")
    return wall, (ru.ru_utime + ru.ru_stime) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=60, help="runs per command (default 60)")
    ap.add_argument("--hyperfine", action="store_true", help="measure with hyperfine -N instead of the own loop")
    ap.add_argument("--rounds", type=int, default=3, help="with --hyperfine: interleaved rounds (default 3)")
    ap.add_argument("--name", default="startup", help="name of the results file under $BENCH_OUT")
    a = ap.parse_args()

    port = free_port()
    sock = listener(port)
    threading.Thread(target=drain, args=(sock,), daemon=True).start()
    tmp = tempfile.mkdtemp(prefix="waitfor-bench-")
    yaml_path = os.path.join(tmp, "deps.yaml")
    with open(yaml_path, "w") as f:
        f.write(f"dependencies:\n  - name: db\n    url: tcp://127.0.0.1:{port}\n")

    cmds = [
        ("python -c pass (baseline)", [PY, "-c", "pass"]),
        ("python -I -S -c pass", [PY, "-I", "-S", "-c", "pass"]),
        ("/bin/true", ["/bin/true"]),
        # issue 12's floor for the YAML case: the interpreter with what that case cannot avoid
        ("python -c 'import yaml, socket, threading'", [PY, "-c", "import yaml, socket, threading"]),
        ("waitfor run -- /bin/true", [WAITFOR, "run", "--", "/bin/true"]),
        ("waitfor run -c deps.yaml (1 ready TCP)", [WAITFOR, "run", "-q", "-c", yaml_path, "--", "/bin/true"]),
        ("waitfor run 127.0.0.1:PORT (CLI target)", [WAITFOR, "run", "-q", f"127.0.0.1:{port}", "--", "/bin/true"]),
    ]
    if shutil.which("wait-for-it"):
        cmds.append(("wait-for-it -h 127.0.0.1 -p PORT", ["/usr/bin/wait-for-it", "-q", "-h", "127.0.0.1", "-p",
                                                         str(port), "-t", "10", "--", "/bin/true"]))
    use_hf = a.hyperfine and shutil.which("hyperfine")
    wall = {n: [] for n, _ in cmds}
    cpu = {n: [] for n, _ in cmds}
    rnd = random.Random()
    if use_hf:
        per_round = max(1, a.runs // a.rounds)
        for _ in range(a.rounds):
            for name, argv in cmds:
                w, c = run_hyperfine(argv, per_round, 3)
                wall[name] += w
                cpu[name] += c
    else:
        for _ in range(3):  # warm-up: page cache, .pyc files
            for _, argv in cmds:
                spawn_once(argv)
        for _ in range(a.runs):
            order = cmds[:]
            rnd.shuffle(order)
            for name, argv in order:
                w, c = spawn_once(argv)
                wall[name].append(w)
                cpu[name].append(c)
    samples = wall
    base = median(samples[cmds[0][0]])
    rows, result = [], {}
    for name, _ in cmds:
        s = samples[name]
        m = median(s)
        c = median(cpu[name])
        rows.append([name, len(s), m, pct(s, 90), min(s), c, m / base, c / median(cpu[cmds[0][0]])])
        result[name] = {"n": len(s), "median_ms": m, "p90_ms": pct(s, 90), "min_ms": min(s), "ratio": m / base,
                        "cpu_median_ms": c, "cpu_ratio": c / median(cpu[cmds[0][0]])}
    how = f"hyperfine -N, {a.rounds} rounds" if use_hf else "posix_spawn loop, interleaved"
    print(f"start-up, {how}, {len(wall[cmds[0][0]])} runs each, interpreter {PY}")
    print(table(["command", "n", "median ms", "p90 ms", "min ms", "CPU ms", "x baseline", "CPU x base"], rows))
    r1 = result["waitfor run -- /bin/true"]["ratio"]
    r2 = result["waitfor run -c deps.yaml (1 ready TCP)"]["ratio"]
    print(f"\ntarget: waitfor run -- /bin/true <= 1.5x baseline: {r1:.2f}x {verdict(r1 <= 1.5)}")
    print(f"target: YAML + 1 ready TCP dependency <= 3x baseline: {r2:.2f}x {verdict(r2 <= 3.0)}")
    floor = result["python -c 'import yaml, socket, threading'"]
    r3 = result["waitfor run -c deps.yaml (1 ready TCP)"]["median_ms"] / floor["median_ms"]
    c3 = result["waitfor run -c deps.yaml (1 ready TCP)"]["cpu_median_ms"] / floor["cpu_median_ms"]
    print(f"target: YAML + 1 ready TCP dependency <= 1.15x import yaml, socket, threading (issue 12): "
          f"{r3:.2f}x wall, {c3:.2f}x CPU {verdict(r3 <= 1.15)}")
    save(a.name, result)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
