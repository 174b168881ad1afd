"""urllib.parse for every other waitfor module: the one import point of the URL functions,
so that the start-up trick that imports it without `ipaddress` (waitfor.tricks, where its
measured gain is) applies wherever URLs are parsed (tests/test_architecture.py checks it).
"""

from __future__ import annotations

from waitfor.tricks import import_urllib_parse

parse = import_urllib_parse()

from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit, urlunsplit  # noqa: E402

__all__ = ["SplitResult", "parse", "unquote", "unquote_plus", "urlsplit", "urlunsplit"]
