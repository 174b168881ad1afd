"""The signal state waitfor inherited, so that the app can inherit it in turn.

Python changes dispositions at start-up: it ignores SIGPIPE and SIGXFSZ and installs a
handler for SIGINT (unless SIGINT was ignored). An app that inherited those would never
die of EPIPE, as `yes | head` expects (see CPython's `restore_signals` in subprocess).
The mask is untouched by Python, so the one read first thing in main() is the inherited one.
Python cannot tell whether SIGPIPE or SIGXFSZ were ignored before it started; they are
restored to the default, as subprocess does.
"""

try:
    # The C module: `signal` wraps the same functions to return enums, and importing
    # `enum` costs ~4 ms of the start-up that `waitfor -- app` is budgeted.
    import _signal as signal
except ImportError:  # not CPython
    import signal

UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
PYTHON_IGNORES = {signal.SIGPIPE, signal.SIGXFSZ}


class Inherited:
    """The inherited mask and the set of ignored signals. (No typing/dataclasses here:
    this module is imported by the lean supervisor, whose memory is budgeted.)"""

    __slots__ = ("mask", "ignored")

    def __init__(self, mask: frozenset, ignored: frozenset):
        self.mask, self.ignored = mask, ignored


def catchable():
    return sorted(int(s) for s in signal.valid_signals() if s not in UNCATCHABLE)


def pending() -> set:
    return {int(s) for s in signal.sigpending()}


def block_all() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, catchable())


def capture() -> Inherited:
    mask = frozenset(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    ignored = frozenset(
        s for s in catchable() if s not in PYTHON_IGNORES and signal.getsignal(s) == signal.SIG_IGN
    )
    return Inherited(mask, ignored)


def restore(state: Inherited) -> None:
    """Dispositions first, then the mask: a signal left pending while waitfor blocked it
    is then delivered with the default action (or ignored), as it would have been."""
    for s in catchable():
        try:
            signal.signal(s, signal.SIG_IGN if s in state.ignored else signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, state.mask)


def encode(sigs) -> str:
    return ",".join(str(s) for s in sorted(sigs)) or "-"


def decode(text: str) -> frozenset:
    return frozenset() if text == "-" else frozenset(int(s) for s in text.split(","))
