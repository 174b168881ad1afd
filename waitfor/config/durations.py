"""Durations as users write them: `250ms`, `10s`, `1m30s`, `2h`, or a bare number of seconds."""

from __future__ import annotations

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Longer is a typo, and would overflow timeouts: sigtimedwait(2) and socket timeouts take
# a time_t. (0 means "no limit" where a setting allows it.)
MAX_SECONDS = 366 * 24 * 3600
_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h)"  # compiled on first use: `re` is not imported at start-up


def parse_duration(text: object) -> float:
    """Return seconds as a float. Raise ValueError with a message meant for users."""
    if isinstance(text, bool) or text is None or isinstance(text, (dict, list)):
        got = "nothing" if text is None else "a list or mapping" if isinstance(text, (dict, list)) else repr(text)
        raise ValueError(f"expected a duration such as 10s, got {got}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip()
        try:
            value = float(s)
        except ValueError:
            pos, value = 0, 0.0
            import re

            for m in re.finditer(_PART, s):
                if m.start() != pos:
                    break
                value += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(s) or not s:
                raise ValueError(
                    f"bad duration {s!r} (use forms like 250ms, 10s, 1m30s, 2h, or seconds)"
                ) from None
    if value < 0 or value != value or value == float("inf"):
        raise ValueError(f"bad duration {text!r}: must be a finite number >= 0")
    if value > MAX_SECONDS:
        raise ValueError(f"bad duration {text!r}: at most 366 days (0 means no limit where allowed)")
    return value


def format_duration(seconds: float) -> str:
    """Seconds as a user writes them, and as parse_duration reads them back: 50ms, 10s,
    1.5s, 5m, 1m30s, 2h."""
    if seconds < 1:
        return f"{seconds * 1000:.4g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{int(hours)}h" if hours else "", f"{int(minutes)}m" if minutes else "",
             f"{secs:.3g}s" if secs >= 0.0005 else ""]
    return "".join(parts)
