"""Signals in one place: names and numbers, the inherited state, the stop set, the
rewrite rule. Imported by the lean supervisor too, so it stays small: the C `_signal`
module at import, `signal`'s enums only inside the functions that name signals.

The signal state waitfor inherited is captured so that the app can inherit it in turn.

Python changes dispositions at start-up: it ignores SIGPIPE and SIGXFSZ and installs a
handler for SIGINT (unless SIGINT was ignored). An app that inherited those would never
die of EPIPE, as `yes | head` expects (see CPython's `restore_signals` in subprocess).
The mask is untouched by Python, so the one read first thing in main() is the inherited one.
Python cannot tell whether SIGPIPE or SIGXFSZ were ignored before it started; they are
restored to the default, as subprocess does.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

try:
    # The C module: `signal` wraps the same functions to return enums, and importing
    # `enum` costs ~4 ms of the start-up that `waitfor -- app` is budgeted.
    import _signal as signal  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # not CPython
    import signal

UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
PYTHON_IGNORES = {signal.SIGPIPE, signal.SIGXFSZ}
# Signals that end the wait at once with 128+N (their default action is to terminate).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})
# Never forwarded, so never rewritten: KILL and STOP never reach waitfor, CHLD is its own.
NOT_FORWARDED = frozenset({signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD})


class Inherited:
    """The inherited mask and the set of ignored signals, and the parent waitfor started
    with (whose death --pdeathsig watches: one that dies during the wait counts). (No
    typing/dataclasses here: this module is imported by the lean supervisor, whose memory
    is budgeted.)"""

    __slots__ = ("ignored", "mask", "parent")

    def __init__(self, mask: frozenset[int], ignored: frozenset[int], parent: int = 0) -> None:
        self.mask, self.ignored, self.parent = mask, ignored, parent


def catchable() -> list[int]:
    return sorted(int(s) for s in signal.valid_signals() if s not in UNCATCHABLE)


def pending() -> set[int]:
    return {int(s) for s in signal.sigpending()}


def block_all() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, catchable())


def capture() -> Inherited:
    mask = frozenset(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    ignored = frozenset(
        s for s in catchable() if s not in PYTHON_IGNORES and signal.getsignal(s) == signal.SIG_IGN
    )
    import os

    return Inherited(mask, ignored, os.getppid())


def restore(state: Inherited) -> None:
    """Dispositions first, then the mask: a signal left pending while waitfor blocked it
    is then delivered with the default action (or ignored), as it would have been."""
    for s in catchable():
        try:
            signal.signal(s, signal.SIG_IGN if s in state.ignored else signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, state.mask)


def encode(sigs: Iterable[int]) -> str:
    return ",".join(str(s) for s in sorted(sigs)) or "-"


def decode(text: str) -> frozenset[int]:
    return frozenset() if text == "-" else frozenset(int(s) for s in text.split(","))


# --------------------------------------------------------------------------- names


def parse_signal(text: object) -> int:
    """TERM, SIGTERM, 15, RTMIN+3 -> a number, as kill(1) reads them; ValueError if unknown."""
    import signal as signal_enums

    s = str(text).strip().upper()
    n: int | None = None
    if s.isascii() and s.isdigit():  # not `١٥` nor `²`, which int() reads or rejects
        n = int(s)
    else:
        if s.startswith("SIG"):
            s = s[3:]
        for base in ("RTMIN", "RTMAX"):
            if s.startswith(base):
                rest = s[len(base):]
                offset = int(rest) if rest and rest.isascii() and rest.lstrip("+-").isdigit() else (0 if not rest else None)
                if offset is not None:
                    n = int(getattr(signal_enums, "SIG" + base)) + offset
        if n is None:
            member = getattr(signal_enums.Signals, "SIG" + s, None) if s.isalnum() else None
            if member is None:
                raise ValueError(f"unknown signal {text!r}")
            n = int(member)
    if n not in {int(x) for x in signal.valid_signals()}:
        raise ValueError(f"unknown signal {text!r}")
    return n


def signal_name(n: int) -> str:
    """15 -> SIGTERM; 34 -> SIGRTMIN; an unknown number -> "signal N"."""
    import signal as signal_enums

    if signal_enums.SIGRTMIN <= n <= signal_enums.SIGRTMAX:
        return "SIGRTMIN" if n == signal_enums.SIGRTMIN else f"SIGRTMIN+{n - signal_enums.SIGRTMIN}"
    try:
        return signal_enums.Signals(n).name
    except ValueError:
        return f"signal {n}"


def parse_rewrite(text: str) -> tuple[int, int]:
    """`--rewrite TERM:QUIT` -> (15, 3); `X:-` drops X -> (X, 0)."""
    src, sep, dst = text.partition(":")
    if not sep:
        raise ValueError(f"expected SIG:SIG, such as TERM:QUIT or WINCH:-, got {text!r}")
    source = parse_signal(src)
    if source in NOT_FORWARDED:
        raise ValueError(f"{src.strip()} cannot be rewritten: waitfor never forwards it")
    return source, 0 if dst.strip() == "-" else parse_signal(dst)
