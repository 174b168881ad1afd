"""urllib.parse for the rest of waitfor, imported without loading ipaddress up front.

urllib.parse imports ipaddress at its top (0.9 ms: a fifth of what waitfor adds to the
start-up of `waitfor -c deps.yaml -- app` over its floor, BENCHMARKS.md) only to check a
bracketed host such as `[::1]`. While urllib.parse is imported here, a stand-in takes the
name; the first time urllib.parse uses it, the stand-in imports the real module and hands
it over. Nothing else ever sees the stand-in: it is in sys.modules only during that one
import, and any other `import ipaddress` gets the real module. Every waitfor module takes
its URL functions from here (tests/test_architecture.py checks it).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
else:
    ModuleType = type(sys)  # types.ModuleType, without importing types


class _Deferred(ModuleType):
    def __getattr__(self, name: str) -> object:
        import ipaddress  # the real module: the stand-in left sys.modules long ago

        parse.ipaddress = ipaddress  # type: ignore[attr-defined]  # urllib.parse's own name
        return getattr(ipaddress, name)


if "urllib.parse" in sys.modules or "ipaddress" in sys.modules:
    import urllib.parse as parse
else:
    sys.modules["ipaddress"] = _Deferred("ipaddress")
    try:
        import urllib.parse as parse
    finally:
        del sys.modules["ipaddress"]

from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit, urlunsplit  # noqa: E402

__all__ = ["SplitResult", "unquote", "unquote_plus", "urlsplit", "urlunsplit"]
