"""Signal names <-> numbers, as kill(1) writes them: TERM, SIGTERM, 15, RTMIN+3."""

import signal


def parse_signal(text) -> int:
    s = str(text).strip().upper()
    if s.isdigit():
        n = int(s)
    else:
        if s.startswith("SIG"):
            s = s[3:]
        n = None
        for base in ("RTMIN", "RTMAX"):
            if s.startswith(base):
                rest = s[len(base):]
                offset = int(rest) if rest and rest.lstrip("+-").isdigit() else (0 if not rest else None)
                if offset is not None:
                    n = getattr(signal, "SIG" + base) + offset
        if n is None:
            member = getattr(signal.Signals, "SIG" + s, None) if s.isalnum() else None
            if member is None:
                raise ValueError(f"unknown signal {text!r}")
            n = int(member)
    if n not in {int(x) for x in signal.valid_signals()}:
        raise ValueError(f"unknown signal {text!r}")
    return n


def signal_name(n: int) -> str:
    if signal.SIGRTMIN <= n <= signal.SIGRTMAX:
        return "SIGRTMIN" if n == signal.SIGRTMIN else f"SIGRTMIN+{n - signal.SIGRTMIN}"
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"
