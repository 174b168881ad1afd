"""The start-up tricks that pay, in one place, each with what it was measured to win.

waitfor keeps a trick (code that departs from the standard idiom only to start faster)
only when it wins at least about 1 ms on a path users run often: `waitfor run -- app` (the
exec-only start-up, budgeted at 1.5x `python -c pass`), `run -c deps.yaml -- app` and
`health`. Below that, the standard idiom wins on readability (issue 19 item 6). Dropped
for that reason: the `types` aliases (`type(type.__dict__)`, `type(sys.implementation)`:
0.15 ms of `run -- app`; on the YAML path `types` is loaded anyway) and `__import__` in
place of importlib.import_module (0.14 ms). Figures: BENCHMARKS.md, "Start-up tricks".

- `Record`: collections.namedtuple's behaviour (fields, defaults for the last ones,
  _fields, _replace, repr, pickling; tests/test_architecture.py checks it side by side)
  without importing collections, which `waitfor run -- app` otherwise never loads.
  Measured 2026-12-07 on the shared 2-core dev machine (python 3.11 -I -S, two records of
  11 and 33 fields as model.py has, median of 40 runs): namedtuple 2.4 ms (p10 2.0),
  Record 0.5 ms (p10 0.4) with this module's own import: about 1.9 ms of `run -- app`.
  (The YAML path loads collections anyway, through yaml and re: there it wins nothing.)
- `import_urllib_parse()`: urllib.parse without its top-level `import ipaddress`, which it
  needs only to check a bracketed host such as `[::1]`. Measured 2026-12-07 with
  bench/compare_trees.py --venv (this tree with and without it, 80 interleaved runs, three
  times): 1.2 to 2.0 ms of CPU (median) of `run -c deps.yaml -- app`; python -X importtime
  puts ipaddress alone at 0.92 to 0.97 ms.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import ModuleType
else:
    ModuleType = type(sys)  # types.ModuleType: `types` is not loaded yet where this runs


_MISSING = object()


class Record(tuple):
    """A tuple with named, read-only fields: what collections.namedtuple makes (fields,
    defaults for the last ones, _fields, _replace; tests/test_architecture.py checks the
    behaviour), written out to keep collections off the start-up path. A subclass names its
    fields in the class statement: `class Point(Record, fields=("x", "y"), defaults=(0,))`."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _defaults: tuple[object, ...] = ()

    def __init_subclass__(cls, fields: Iterable[str] = (), defaults: tuple[object, ...] = ()) -> None:
        cls._fields, cls._defaults = tuple(fields), defaults
        for i, field in enumerate(cls._fields):
            setattr(cls, field, _field(i))

    def __new__(cls, *args: object, **kw: object) -> Record:
        names, n = cls._fields, len(cls._fields)
        if len(args) > n:
            raise TypeError(f"{cls.__name__}() takes {n} arguments, {len(args)} given")
        values = [*args, *[_MISSING] * (n - len(args))]
        for key, value in kw.items():
            i = names.index(key) if key in names else -1
            if i < 0 or values[i] is not _MISSING:
                raise TypeError(f"{cls.__name__}() got an unexpected or repeated argument {key!r}")
            values[i] = value
        required = n - len(cls._defaults)
        for i, value in enumerate(values):
            if value is _MISSING:
                if i < required:
                    raise TypeError(f"{cls.__name__}() is missing the argument {names[i]!r}")
                values[i] = cls._defaults[i - required]
        return tuple.__new__(cls, values)

    def _replace(self, **kw: object) -> Record:
        values = list(self)
        for key, value in kw.items():
            if key not in self._fields:
                raise TypeError(f"{type(self).__name__}._replace() got an unexpected argument {key!r}")
            values[self._fields.index(key)] = value
        return tuple.__new__(type(self), values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={v!r}' for f, v in zip(self._fields, self))})"

    def __getnewargs__(self) -> tuple[object, ...]:
        return tuple(self)


def _field(i: int) -> property:
    def get(self: Record) -> object:
        return self[i]

    return property(get, doc=f"field {i}")


# ------------------------------------------------------------------ urllib.parse, ipaddress later


def import_urllib_parse() -> ModuleType:
    """urllib.parse, imported with a stand-in under the name `ipaddress`. The first time
    urllib.parse uses it (a `[v6]` host), the stand-in imports the real module and hands it
    over. Nothing else ever sees the stand-in: it is in sys.modules only during this one
    import, and any other `import ipaddress` gets the real module."""
    if "urllib.parse" in sys.modules or "ipaddress" in sys.modules:
        import urllib.parse as parse

        return parse
    sys.modules["ipaddress"] = _Deferred("ipaddress")
    try:
        import urllib.parse as parse
    finally:
        del sys.modules["ipaddress"]
    return parse


class _Deferred(ModuleType):
    def __getattr__(self, name: str) -> object:
        import ipaddress  # the real module: the stand-in left sys.modules long ago
        import urllib.parse

        urllib.parse.ipaddress = ipaddress  # type: ignore[attr-defined]  # urllib.parse's own name
        return getattr(ipaddress, name)
