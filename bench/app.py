"""The app that every init supervises in bench/pid1.py: the same program for each.

Run as `python -I -S app.py MODE N`; it writes one line per measurement to stdout.

signals N: block SIGUSR1, say "ready", then N times: sigwaitinfo(SIGUSR1) and write
    "S <CLOCK_MONOTONIC ns>" at once. sigwaitinfo wakes as soon as the signal is
    delivered, with no Python signal-handler scheduling in between.
orphans N: N times: fork a child that forks a grandchild and exits at once (so the
    grandchild is re-parented to PID 1, the init); once the child is reaped, tell the
    grandchild to exit. The grandchild writes "<pid> <ns>" (ns = CLOCK_MONOTONIC just
    before os._exit) to a pipe; the app then polls kill(pid, 0) every ~50 us until ESRCH
    (a zombie still exists for kill(2); it is gone once the init has reaped it) and
    writes "O <exit ns> <gone ns>".
"""

import os
import signal
import sys
import time


def out(line: str) -> None:
    os.write(1, (line + "\n").encode())


def signals(n: int) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    out("ready")
    for _ in range(n):
        signal.sigwaitinfo({signal.SIGUSR1})
        out(f"S {time.monotonic_ns()}")


def orphans(n: int) -> None:
    out("ready")
    for _ in range(n):
        go_r, go_w = os.pipe()
        rep_r, rep_w = os.pipe()
        child = os.fork()
        if child == 0:
            if os.fork() == 0:  # grandchild
                os.close(go_w)
                os.close(rep_r)
                os.read(go_r, 1)
                os.write(rep_w, f"{os.getpid()} {time.monotonic_ns()}".encode())
                os._exit(0)
            os._exit(0)
        os.waitpid(child, 0)  # the grandchild is now an orphan of the init
        os.close(go_r)
        os.close(rep_w)
        os.write(go_w, b"x")
        pid, t_exit = map(int, os.read(rep_r, 64).split())
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.00005)
        t_gone = time.monotonic_ns()
        os.close(go_w)
        os.close(rep_r)
        out(f"O {t_exit} {t_gone}")
        time.sleep(0.002)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("signals", "orphans"):
        raise SystemExit(__doc__)
    mode, count = sys.argv[1], int(sys.argv[2])
    {"signals": signals, "orphans": orphans}[mode](count)
