"""Target 2, detection latency and probe rate.

Latency: waitfor and wait-for-it wait side by side for the same TCP port on 127.0.0.1;
after a random delay (0.2-2.0 s) this script opens a listener on it. The command after
`--` is `date +%s.%N` for both, so each prints the wall-clock time at which its command
started; latency = that time - the time right after listen() returned (both
CLOCK_REALTIME, same machine). Targets: waitfor median <= 50 ms, and >= 10x faster than
wait-for-it (median vs median).

  waitfor run -q -t 10s 127.0.0.1:PORT -- date +%s.%N
  wait-for-it -q -h 127.0.0.1 -p PORT -t 10 -- date +%s.%N

Probe rate on a closed port (target <= 20/s), measured two ways:
- netns: `waitfor wait -t 3s 127.0.0.1:CLOSED` (and wait-for-it) runs alone in a new
  network namespace (`unshare --net`, root), whose TCP counters (/proc/net/snmp) count
  only its own connection attempts; ActiveOpens is sampled every 50 ms and the rate is
  the slope from 0.5 s after the start until the waiter gives up. Nothing slows it down.
- strace: the same under `strace -f -ttt -e trace=connect`; connect() calls to the port,
  divided by the span between the first and the last. strace slows every syscall, so
  this rate can come out a little lower than the real one.
"""

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PY, WAITFOR, free_port, listener, median, pct, save, table, verdict

DATE = shutil.which("date") or "/bin/date"


WF = [WAITFOR]  # the waitfor command: the installed one, or a tree's (--tree)
LIMIT = [10]  # each waiter's timeout, seconds (--wait-timeout)


def commands(port):
    cmds = {"waitfor": [*WF, "run", "-q", "-t", f"{LIMIT[0]}s", f"127.0.0.1:{port}", "--", DATE, "+%s.%N"]}
    if shutil.which("wait-for-it"):
        cmds["wait-for-it"] = ["/usr/bin/wait-for-it", "-q", "-h", "127.0.0.1", "-p", str(port), "-t", str(LIMIT[0]),
                               "--", DATE, "+%s.%N"]
    return cmds


def one_trial(delay):
    port = free_port()
    procs = {name: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
             for name, argv in commands(port).items()}
    time.sleep(delay)
    sock = listener(port)
    t_listen = time.time()
    out = {}
    for name, p in procs.items():
        stdout, _ = p.communicate(timeout=LIMIT[0] + 5)
        if p.returncode != 0:
            raise SystemExit(f"{name} exited {p.returncode}")
        out[name] = (float(stdout.decode().strip()) - t_listen) * 1000
    sock.close()
    return out


def probe_rate(name, argv, port, seconds):
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as f:
        subprocess.run(["strace", "-f", "-ttt", "-qq", "-e", "trace=connect", "-o", f.name] + argv,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines = [ln for ln in f.read().splitlines() if f"htons({port})" in ln]
    stamps = [float(re.match(r"(?:\d+\s+)?(\d+\.\d+)", ln).group(1)) for ln in lines]
    if len(stamps) < 2:
        return len(stamps), float("nan"), float("nan")
    span = stamps[-1] - stamps[0]
    return len(stamps), span, (len(stamps) - 1) / span


NETNS_HELPER = r"""
import subprocess, sys, time
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
def opens():
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
samples = []
while p.poll() is None:
    samples.append((time.monotonic() - t0, opens()))
    time.sleep(0.05)
print(repr(samples))
"""


def probe_rate_netns(argv):
    out = subprocess.run(["unshare", "--net", PY, "-c", NETNS_HELPER] + argv, capture_output=True, text=True,
                         check=True).stdout
    samples = [s for s in eval(out) if s[0] >= 0.5]  # our own output: a list of (seconds, ActiveOpens)
    if len(samples) < 2:
        return float("nan"), float("nan"), float("nan")
    (ta, a), (tb, b) = samples[0], samples[-1]
    return b - a, tb - ta, (b - a) / (tb - ta)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=30, help="latency trials (default 30)")
    ap.add_argument("--min-delay", type=float, default=0.2)
    ap.add_argument("--max-delay", type=float, default=2.0)
    ap.add_argument("--rate-seconds", type=int, default=3, help="how long the probe-rate runs wait (default 3)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--tree", help="run waitfor from this source tree (PYTHONPATH=TREE python3 TREE/bin/waitfor)")
    ap.add_argument("--no-rate", action="store_true", help="latency only")
    ap.add_argument("--wait-timeout", type=int, default=10, help="each waiter's timeout, s (default 10; "
                    "more than --max-delay)")
    a = ap.parse_args()
    LIMIT[0] = a.wait_timeout
    if a.tree:
        tree = os.path.abspath(a.tree)
        os.environ["PYTHONPATH"] = tree  # inherited by every waiter (and the netns helper's)
        WF[:] = [PY, os.path.join(tree, "bin", "waitfor")]
    rnd = random.Random(a.seed)

    lat = {}
    for _ in range(a.trials):
        for name, ms in one_trial(rnd.uniform(a.min_delay, a.max_delay)).items():
            lat.setdefault(name, []).append(ms)
    rows, result = [], {"latency": {}, "rate": {}}
    wf_med = median(lat["waitfor"])
    for name, s in lat.items():
        m = median(s)
        rows.append([name, len(s), m, pct(s, 90), max(s), m / wf_med])
        result["latency"][name] = {"n": len(s), "median_ms": m, "p90_ms": pct(s, 90), "max_ms": max(s),
                                   "samples_ms": s}
    print(f"detection latency, listen() -> command started, {a.trials} trials, delays "
          f"{a.min_delay}-{a.max_delay} s (both waiters on the same port at once)")
    print(table(["waiter", "n", "median ms", "p90 ms", "max ms", "x waitfor"], rows))

    rrows = []
    port = free_port()  # nobody listens here
    rate_cmds = {"waitfor": [*WF, "wait", "-q", "-t", f"{a.rate_seconds}s", f"127.0.0.1:{port}"]}
    if shutil.which("wait-for-it"):
        rate_cmds["wait-for-it"] = ["/usr/bin/wait-for-it", "-q", "-h", "127.0.0.1", "-p", str(port),
                                    "-t", str(a.rate_seconds)]
    for name, argv in ({} if a.no_rate else rate_cmds).items():
        if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
            n, span, rate = probe_rate_netns(argv)
            rrows.append([name, "netns ActiveOpens", n, span, rate])
            result["rate"][name] = {"connects": n, "span_s": span, "per_s": rate, "how": "netns"}
        if shutil.which("strace"):
            n, span, rate = probe_rate(name, argv, port, a.rate_seconds)
            rrows.append([name, "strace connect()", n, span, rate])
            result["rate"].setdefault(name, {"connects": n, "span_s": span, "per_s": rate, "how": "strace"})
            result["rate"][name + " (strace)"] = {"connects": n, "span_s": span, "per_s": rate}
    print(f"\nprobe rate on a closed port, {a.rate_seconds} s")
    print(table(["waiter", "counted by", "attempts", "span s", "per second"], rrows))

    print()
    ratio = median(lat.get("wait-for-it", [float("nan")])) / wf_med
    print(f"target: waitfor detection median <= 50 ms: {wf_med:.1f} ms {verdict(wf_med <= 50)}")
    print(f"target: >= 10x faster than wait-for-it: {ratio:.1f}x {verdict(ratio >= 10)}")
    if not a.no_rate and "waitfor" in result["rate"]:
        r = result["rate"]["waitfor"]["per_s"]
        print(f"target: probe rate while waiting <= 20/s: {r:.1f}/s {verdict(r <= 20)}")
    save("detection", result)


if __name__ == "__main__":
    main()
