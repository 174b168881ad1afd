"""Target 1, start-up cost.

  waitfor run -- /bin/true                         <= 1.5x  python -c pass
  waitfor run -c deps.yaml -- /bin/true            <= 3x    python -c pass
      (deps.yaml: one TCP dependency, a listener this script holds open on 127.0.0.1)

Peers shown for context: wait-for-it on the same ready port, `python -I -S -c pass`
(the floor of any Python program), /bin/true (the floor of any process).

Uses hyperfine -N (no shell) when present, else an own posix_spawn loop. The commands
are measured in interleaved rounds, so that load from other work on the machine falls on
all of them alike. Reports median and p90 of all runs, and ratios of medians.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PY, WAITFOR, free_port, listener, median, pct, save, table, verdict  # noqa: E402


def drain(sock):
    """Accept and close, so the backlog never fills however many runs connect."""
    while True:
        try:
            c, _ = sock.accept()
            c.close()
        except OSError:
            return


def run_hyperfine(argv, runs, warmup):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run(["hyperfine", "-N", "-w", str(warmup), "-r", str(runs), "--export-json", f.name,
                        "--style", "none", " ".join(argv)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        data = json.load(open(f.name))
    res = data["results"][0]
    if any(c != 0 for c in res.get("exit_codes", [0])):
        raise SystemExit(f"non-zero exit from {argv}")
    return [t * 1000 for t in res["times"]]


def run_loop(argv, runs, warmup):
    out = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ)
        _, status = os.waitpid(pid, 0)
        dt = (time.perf_counter() - t0) * 1000
        if status != 0:
            raise SystemExit(f"non-zero exit from {argv}")
        if i >= warmup:
            out.append(dt)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30, help="runs per command per round (default 30)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--loop", action="store_true", help="own loop even if hyperfine is installed")
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
        ("waitfor run -- /bin/true", [WAITFOR, "run", "--", "/bin/true"]),
        ("waitfor run -c deps.yaml (1 ready TCP)", [WAITFOR, "run", "-q", "-c", yaml_path, "--", "/bin/true"]),
        ("waitfor run 127.0.0.1:PORT (CLI target)", [WAITFOR, "run", "-q", f"127.0.0.1:{port}", "--", "/bin/true"]),
    ]
    if shutil.which("wait-for-it"):
        cmds.append(("wait-for-it -h 127.0.0.1 -p PORT", ["/usr/bin/wait-for-it", "-q", "-h", "127.0.0.1", "-p",
                                                         str(port), "-t", "10", "--", "/bin/true"]))
    use_hf = shutil.which("hyperfine") and not a.loop
    runner = run_hyperfine if use_hf else run_loop
    samples = {n: [] for n, _ in cmds}
    for r in range(a.rounds):
        for name, argv in cmds:
            samples[name] += runner(argv, a.runs, 3)
    base = median(samples[cmds[0][0]])
    rows, result = [], {}
    for name, _ in cmds:
        s = samples[name]
        m = median(s)
        rows.append([name, len(s), m, pct(s, 90), min(s), m / base])
        result[name] = {"n": len(s), "median_ms": m, "p90_ms": pct(s, 90), "min_ms": min(s), "ratio": m / base}
    print(f"start-up, {'hyperfine -N' if use_hf else 'posix_spawn loop'}, {a.rounds} rounds x {a.runs} runs, "
          f"interpreter {PY}")
    print(table(["command", "n", "median ms", "p90 ms", "min ms", "x baseline"], rows))
    r1 = result["waitfor run -- /bin/true"]["ratio"]
    r2 = result["waitfor run -c deps.yaml (1 ready TCP)"]["ratio"]
    print(f"\ntarget: waitfor run -- /bin/true <= 1.5x baseline: {r1:.2f}x {verdict(r1 <= 1.5)}")
    print(f"target: YAML + 1 ready TCP dependency <= 3x baseline: {r2:.2f}x {verdict(r2 <= 3.0)}")
    save("startup", result)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
