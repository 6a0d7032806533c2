"""Where a turn's coroutine (the Strands agent) runs: on the event loop its turn thread keeps.

A Strands agent is a coroutine (``invoke_async`` / ``stream_async``); the turn around it does
blocking store I/O, so the server runs the whole turn on a turn thread of its own, never on the
event loop that answers ``/ping``. ``asyncio.run`` per turn would build and tear down an event
loop (a selector, a self-pipe, the executor shutdown) every time: each turn thread keeps one
instead (``keep_loop``, the turn executor's initializer), and ``run_here`` runs the coroutine on
it. Any other thread (a direct caller's) gets a loop for the call, as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from models.base import run_coroutine

T = TypeVar("T")

_local = threading.local()


def keep_loop() -> None:
    """Give this thread an event loop of its own for every turn it runs (a ``ThreadPoolExecutor`` initializer)."""
    _local.runner = asyncio.Runner()


def run_here(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``make()`` run to completion on this thread: on its kept loop, else as ``models.base.run_coroutine`` does."""
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    if runner is None:
        return run_coroutine(make)
    # the caller's context (the request id, its phase timings), not the one the runner captured when it was made
    return runner.run(make(), context=contextvars.copy_context())
