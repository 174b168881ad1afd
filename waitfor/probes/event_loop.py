"""A per-thread asyncio event loop for the asyncio drivers (postgres, nats).

asyncio is imported only when such a driver runs an attempt: it costs start-up that a wait
for tcp or http ports should not pay.
"""

from __future__ import annotations

import threading

from waitfor.probes.base import NotReady
from waitfor.probes.limits import local_limit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any, TypeVar

    T = TypeVar("T")


_loops = threading.local()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on this thread's own event loop (postgres, nats), kept for the thread's
    next attempt: creating a loop per attempt (asyncio.run) costs three fds each time, and
    fails in the middle (with a traceback from its __del__) when none is left."""
    import asyncio

    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        try:
            loop = _new_loop()
        except OSError as e:
            coro.close()
            raise local_limit(e) or NotReady(f"cannot start an event loop: {e.strerror}") from None
        _loops.loop = loop
    try:
        return loop.run_until_complete(coro)
    finally:
        # as asyncio.run does: nothing of this attempt runs on into the next one
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _make_loop_class() -> type:
    import asyncio

    class Loop(asyncio.SelectorEventLoop):
        _built = False

        def __init__(self) -> None:
            super().__init__()
            self._built = True

        def __del__(self, *args: Any) -> None:
            # A loop that could not get its epoll fd or self-pipe (EMFILE) is half made:
            # without this, its __del__ prints a traceback.
            if self._built:
                super().__del__(*args)

    return Loop


def _new_loop() -> Any:  # the class is made on first use: no asyncio import at start-up
    global _loop_class
    if _loop_class is None:
        _loop_class = _make_loop_class()
    return _loop_class()


_loop_class: type | None = None
