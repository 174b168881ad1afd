"""Target 3, many dependencies: 300 TCP dependencies on 300 ports of 127.0.0.1, whose
listeners this script opens one by one at random times over ~1.5 s. waitfor must start
its command within 300 ms of the last listen().

  waitfor run -q -t 30s 127.0.0.1:P1 ... 127.0.0.1:P300 -- date +%s.%N

Also reported: CPU time waitfor used in all (user+sys, from wait4), since every
dependency polls its closed port every ~50 ms while waiting.

Peer: wait-for-it takes one dependency, so the peer is a chain of 300 of them
(`wait-for-it -h H -p P1 -- wait-for-it -h H -p P2 -- ... -- date`), run in a separate
trial (it would otherwise load the CPUs while waitfor is measured). --no-peer skips it.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import WAITFOR, free_port, listener, median, pct, save, table, verdict

DATE = shutil.which("date") or "/bin/date"


def ports(n):
    out = set()
    while len(out) < n:
        out.add(free_port())
    return sorted(out)


def trial(argv_for, n, spread, rnd):
    ps = ports(n)
    argv = argv_for(ps)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # let it start and begin polling
    t0 = time.monotonic()
    order = ps[:]
    rnd.shuffle(order)
    at = sorted(rnd.uniform(0, spread) for _ in order)
    socks = []
    for port, when in zip(order, at):
        delay = t0 + when - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        socks.append(listener(port, 64))
    t_last = time.time()
    stdout = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    for s in socks:
        s.close()
    if status != 0:
        raise SystemExit(f"{argv[0]} exited with status {status}")
    return (float(stdout.decode().strip()) - t_last) * 1000, ru.ru_utime + ru.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=300, help="dependencies (default 300)")
    ap.add_argument("--trials", type=int, default=5, help="waitfor trials (default 5)")
    ap.add_argument("--spread", type=float, default=1.5, help="listeners open over this many seconds")
    ap.add_argument("--no-peer", action="store_true", help="skip the wait-for-it chain")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    rnd = random.Random(a.seed)

    def waitfor_argv(ps):
        return [WAITFOR, "run", "-q", "-t", "30s"] + [f"127.0.0.1:{p}" for p in ps] + ["--", DATE, "+%s.%N"]

    def chain_argv(ps):
        argv = []
        for p in ps:
            argv += ["/usr/bin/wait-for-it", "-q", "-h", "127.0.0.1", "-p", str(p), "-t", "60", "--"]
        return argv + [DATE, "+%s.%N"]

    res = {}
    for _ in range(a.trials):
        lat, cpu = trial(waitfor_argv, a.n, a.spread, rnd)
        res.setdefault("waitfor", ([], []))
        res["waitfor"][0].append(lat)
        res["waitfor"][1].append(cpu)
    if not a.no_peer and shutil.which("wait-for-it"):
        lat, cpu = trial(chain_argv, a.n, a.spread, rnd)
        res[f"wait-for-it x{a.n} chain"] = ([lat], [cpu])
    rows, result = [], {}
    for name, (lat, cpu) in res.items():
        rows.append([name, len(lat), median(lat), pct(lat, 90), max(lat), median(cpu)])
        result[name] = {"n": len(lat), "median_ms": median(lat), "p90_ms": pct(lat, 90), "max_ms": max(lat),
                        "cpu_s_median": median(cpu), "samples_ms": lat}
    wf = result["waitfor"]
    for row in rows:
        row.append(result[row[0]]["median_ms"] / wf["median_ms"])
    print(f"scale: {a.n} TCP dependencies, listeners opened over {a.spread} s; "
          f"last listen() -> command started")
    print(table(["waiter", "n", "median ms", "p90 ms", "max ms", "CPU s", "x waitfor"], rows))
    print(f"\ntarget: done within 300 ms of the last listen(): worst of {wf['n']} trials {wf['max_ms']:.0f} ms "
          f"{verdict(wf['max_ms'] <= 300)}")
    save("scale", result)


if __name__ == "__main__":
    main()
