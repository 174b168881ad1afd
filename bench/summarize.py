"""Summarize several runs of run_all.sh (each with its own BENCH_OUT directory):
the median over the runs of each figure, and its spread (min-max) as the noise.

    for i in 1 2 3; do BENCH_OUT=/tmp/bench/r$i bench/run_all.sh; done
    python3 bench/summarize.py /tmp/bench/r*
"""

import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table

FIGURES = [
    # (file, path, label, target description, check)
    ("startup", ("python -c pass (baseline)", "median_ms"), "start-up: python -c pass, median ms", "", None),
    ("startup", ("waitfor run -- /bin/true", "median_ms"), "start-up: waitfor run -- /bin/true, median ms", "", None),
    ("startup", ("waitfor run -- /bin/true", "p90_ms"), "start-up: waitfor run -- /bin/true, p90 ms", "", None),
    ("startup", ("waitfor run -- /bin/true", "ratio"), "start-up: waitfor run -- /bin/true, x baseline", "<= 1.5", lambda v: v <= 1.5),
    ("startup", ("waitfor run -c deps.yaml (1 ready TCP)", "median_ms"), "start-up: YAML + 1 TCP, median ms", "", None),
    ("startup", ("waitfor run -c deps.yaml (1 ready TCP)", "p90_ms"), "start-up: YAML + 1 TCP, p90 ms", "", None),
    ("startup", ("waitfor run -c deps.yaml (1 ready TCP)", "ratio"), "start-up: YAML + 1 TCP, x baseline", "<= 3", lambda v: v <= 3),
    ("startup", ("wait-for-it -h 127.0.0.1 -p PORT", "median_ms"), "start-up: wait-for-it (1 ready TCP), median ms", "", None),
    ("startup", ("waitfor run -- /bin/true", "cpu_ratio"), "start-up: waitfor run -- /bin/true, CPU x baseline", "", None),
    ("startup", ("waitfor run -c deps.yaml (1 ready TCP)", "cpu_ratio"), "start-up: YAML + 1 TCP, CPU x baseline", "", None),
    ("startup_clean", ("python -c pass (baseline)", "median_ms"), "clean venv: python -c pass, median ms", "", None),
    ("startup_clean", ("waitfor run -- /bin/true", "median_ms"), "clean venv: waitfor run -- /bin/true, median ms", "", None),
    ("startup_clean", ("waitfor run -- /bin/true", "p90_ms"), "clean venv: waitfor run -- /bin/true, p90 ms", "", None),
    ("startup_clean", ("waitfor run -- /bin/true", "ratio"), "clean venv: waitfor run -- /bin/true, x baseline", "<= 1.5", lambda v: v <= 1.5),
    ("startup_clean", ("waitfor run -- /bin/true", "cpu_ratio"), "clean venv: waitfor run -- /bin/true, CPU x baseline", "", None),
    ("startup_clean", ("waitfor run -c deps.yaml (1 ready TCP)", "median_ms"), "clean venv: YAML + 1 TCP, median ms", "", None),
    ("startup_clean", ("waitfor run -c deps.yaml (1 ready TCP)", "p90_ms"), "clean venv: YAML + 1 TCP, p90 ms", "", None),
    ("startup_clean", ("waitfor run -c deps.yaml (1 ready TCP)", "ratio"), "clean venv: YAML + 1 TCP, x baseline", "<= 3", lambda v: v <= 3),
    ("startup_clean", ("waitfor run -c deps.yaml (1 ready TCP)", "cpu_ratio"), "clean venv: YAML + 1 TCP, CPU x baseline", "", None),
    ("detection", ("latency", "waitfor", "median_ms"), "detection: waitfor, median ms", "<= 50", lambda v: v <= 50),
    ("detection", ("latency", "waitfor", "p90_ms"), "detection: waitfor, p90 ms", "", None),
    ("detection", ("latency", "wait-for-it", "median_ms"), "detection: wait-for-it, median ms", "", None),
    ("detection", ("rate", "waitfor", "per_s"), "probe rate: waitfor, connect()/s", "<= 20", lambda v: v <= 20),
    ("detection", ("rate", "waitfor (strace)", "per_s"), "probe rate: waitfor under strace, connect()/s", "", None),
    ("detection", ("rate", "wait-for-it", "per_s"), "probe rate: wait-for-it, connect()/s", "", None),
    ("detection", ("latency", "waitfor", "max_ms"), "detection: waitfor, max ms", "", None),
    ("scale", ("waitfor", "median_ms"), "scale 300: waitfor, median ms after last listen", "", None),
    ("scale", ("waitfor", "max_ms"), "scale 300: waitfor, worst trial ms", "<= 300", lambda v: v <= 300),
    ("scale", ("waitfor", "cpu_s_median"), "scale 300: waitfor CPU s per run", "", None),
    ("scale", ("wait-for-it x300 chain", "median_ms"), "scale 300: wait-for-it chain, ms", "", None),
]
for init in ("tini", "dumb-init", "catatonit", "waitfor"):
    tgt = init == "waitfor"
    FIGURES += [
        ("pid1", ("idle", init, "rss_kib"), f"PID 1 {init}: VmRSS KiB", "<= 12288" if tgt else "",
         (lambda v: v <= 12288) if tgt else None),
        ("pid1", ("idle", init, "vol_ctxt"), f"PID 1 {init}: voluntary cs in 5 idle s", "0" if tgt else "",
         (lambda v: v == 0) if tgt else None),
        ("pid1", ("signals", init, "median_ms"), f"PID 1 {init}: signal fwd median ms", "", None),
        ("pid1", ("signals", init, "p99_ms"), f"PID 1 {init}: signal fwd p99 ms", "<= 5" if tgt else "",
         (lambda v: v <= 5) if tgt else None),
        ("pid1", ("orphans", init, "median_ms"), f"PID 1 {init}: reap median ms", "", None),
        ("pid1", ("orphans", init, "p99_ms"), f"PID 1 {init}: reap p99 ms", "<= 10" if tgt else "",
         (lambda v: v <= 10) if tgt else None),
    ]


def get(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def main(dirs):
    data = []
    for d in dirs:
        run = {}
        for name in ("startup", "startup_clean", "detection", "scale", "pid1"):
            p = os.path.join(d, name + ".json")
            if os.path.exists(p):
                run[name] = json.load(open(p))
        data.append(run)
    rows = []
    for f, path, label, target, check in FIGURES:
        vals = [v for v in (get(r.get(f, {}), path) for r in data) if v is not None]
        if not vals:
            continue
        m = statistics.median(vals)
        verdict = "" if check is None else ("ok" if check(m) else "MISSED")
        rows.append([label, len(vals), m, min(vals), max(vals), target, verdict])
    print(table(["figure", "runs", "median", "min", "max", "target", ""], rows))
    for d in dirs:
        p = os.path.join(d, "meta.json")
        if os.path.exists(p):
            m = json.load(open(p))
            print(f"{d}: {m.get('start')}, waitfor at {m.get('commit')}, load {m.get('load_start')}")


if __name__ == "__main__":
    if not sys.argv[1:] or sys.argv[1] in ("-h", "--help"):
        raise SystemExit(__doc__)
    main(sys.argv[1:])
