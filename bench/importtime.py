"""Where start-up time goes: `python -X importtime` of waitfor, N runs, median per module.

    python3 bench/importtime.py                 # waitfor run -- /bin/true
    python3 bench/importtime.py --yaml          # with a YAML file and one ready TCP dependency
    python3 bench/importtime.py --top 25
    python3 bench/importtime.py --floors        # what single imports cost in a fresh interpreter

Prints the top-level imports (those made by the console script, site, or waitfor itself,
whatever they pull in) by median cumulative time, and the heaviest single modules by
median self time. Run it with the interpreter/venv whose start-up you care about: a
development install loads .pth files (editable finder, others) in `site` that a
production image does not.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PY, WAITFOR, free_port, listener, median, table


def parse(text):
    rows = []  # (depth, name, self_us, cumulative_us)
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        selfus, cum, name = line[len("import time:"):].split("|", 2)
        name = name[1:]
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((depth, name.strip(), int(selfus), int(cum)))
    return rows


EXEC = "; import os; os.execv('/bin/true', ['/bin/true'])"
# Each CODE but `pass` ends by exec'ing /bin/true, as waitfor does: an exec skips the
# interpreter's finalization, which otherwise grows with every module imported.
FLOORS = [
    ("pass", "pass"),
    ("pass; exec /bin/true", "pass" + EXEC),
    ("import re; exec (pip's console-script wrapper imports re)", "import re" + EXEC),
    ("import argparse; exec", "import argparse" + EXEC),
    ("import typing, urllib.parse; exec", "import typing, urllib.parse" + EXEC),
    ("import socket, threading; exec", "import socket, threading" + EXEC),
    ("import dataclasses; exec", "import dataclasses" + EXEC),
    ("import tenacity; exec", "import tenacity" + EXEC),
    ("import yaml; exec", "import yaml" + EXEC),
    ("import yaml, socket, threading; exec (least a YAML + TCP wait needs)", "import yaml, socket, threading" + EXEC),
    ("from waitfor.cli import main; exec", "from waitfor.cli import main" + EXEC),
]


def floors(runs):
    """Wall and CPU ms of `python -c IMPORT` for each line of FLOORS, interleaved."""
    import random

    from startup import spawn_once

    cmds = [(label, [PY, "-c", code]) for label, code in FLOORS]
    cmds += [("(waitfor run -- /bin/true)", [WAITFOR, "run", "--", "/bin/true"])]
    wall = {n: [] for n, _ in cmds}
    cpu = {n: [] for n, _ in cmds}
    for i in range(runs + 3):
        order = cmds[:]
        random.shuffle(order)
        for name, argv in order:
            w, c = spawn_once(argv)
            if i >= 3:
                wall[name].append(w)
                cpu[name].append(c)
    base_w, base_c = median(wall[cmds[0][0]]), median(cpu[cmds[0][0]])
    rows = [[n, median(wall[n]), median(wall[n]) - base_w, median(cpu[n]), median(cpu[n]) - base_c,
             median(wall[n]) / base_w] for n, _ in cmds]
    print(f"import floors: `python -c CODE`, each alone in a fresh interpreter, {PY}, {runs} interleaved runs;\n"
          "the imports overlap (argparse imports re, ...): the rows do not add up")
    print(table(["CODE", "wall ms", "wall - pass", "CPU ms", "CPU - pass", "x pass"], rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--yaml", action="store_true", help="YAML file with one ready TCP dependency")
    ap.add_argument("--floors", action="store_true", help="cost of single imports in a fresh interpreter")
    a = ap.parse_args()
    if a.floors:
        return floors(a.runs * 3)
    argv = [PY, "-X", "importtime", WAITFOR, "run", "-q"]
    sock = None
    if a.yaml:
        port = free_port()
        sock = listener(port)
        threading.Thread(target=lambda: [sock.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
        tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        tmp.write(f"dependencies:\n  - url: tcp://127.0.0.1:{port}\n")
        tmp.close()
        argv += ["-c", tmp.name]
    argv += ["--", "/bin/true"]
    cum, own, totals = {}, {}, []
    for _ in range(a.runs):
        p = subprocess.run(argv, capture_output=True, text=True)
        rows = parse(p.stderr)
        totals.append(sum(r[2] for r in rows))
        for depth, name, s, c in rows:
            own.setdefault(name, []).append(s)
            if depth == 0:
                cum.setdefault(name, []).append(c)
    print(f"{' '.join(os.path.basename(x) if i < 1 else x for i, x in enumerate(argv))}: {a.runs} runs")
    print(f"median sum of all import times: {median(totals) / 1000:.1f} ms\n")
    top = sorted(cum.items(), key=lambda kv: -median(kv[1]))[: a.top]
    print(table(["top-level import", "median cumulative ms"], [[k, median(v) / 1000] for k, v in top]))
    print()
    heavy = sorted(own.items(), key=lambda kv: -median(kv[1]))[: a.top]
    print(table(["module", "median self ms"], [[k, median(v) / 1000] for k, v in heavy]))
    if a.yaml:
        os.unlink(tmp.name)


if __name__ == "__main__":
    main()
