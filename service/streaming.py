"""Streaming one turn (payload ``"stream": true``): the turn runs on a thread, its events go through a queue.

The runtime sends each item the returned generator yields as a Server-Sent Event.
A client that hangs up (the generator is closed, or ``client_gone`` says so) abandons
the turn: it stores nothing, and the model stops at its next chunk.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio.from_thread
import anyio.lowlevel

from hooks.memory import MemoryHooks
from service.requests import ChatRequest

logger = logging.getLogger(__name__)

#: put on a stream's queue after its last event
END_OF_STREAM = object()
#: seconds between two checks, while a reply streams, that its HTTP client is still connected
DISCONNECT_POLL_SECONDS = 0.5


def client_gone_check(context: Any) -> Callable[[], bool] | None:
    """A check, callable from any thread, that this request's HTTP client has gone away.

    When a client hangs up mid-stream, Starlette stops reading the generator but
    does not close it, so nothing would stop the turn: the streaming thread asks
    ``Request.is_disconnected`` on the server's event loop instead. Must be called
    from the handler's worker thread; elsewhere (a direct call) there is no check.
    """
    http_request = getattr(context, "request", None)
    if http_request is None or not hasattr(http_request, "is_disconnected"):
        return None
    try:
        loop_token = anyio.from_thread.run_sync(anyio.lowlevel.current_token)
    except RuntimeError:  # not running under the server
        return None

    def gone() -> bool:
        try:
            return bool(anyio.from_thread.run(http_request.is_disconnected, token=loop_token))
        except RuntimeError:  # the server's event loop has stopped: nobody to tell
            return False

    return gone


@dataclass
class StreamedTurn:
    """One streamed turn, shared by the thread that runs it and the generator that sends its events."""

    request: ChatRequest
    request_id: str | None
    hooks: MemoryHooks
    client_gone: Callable[[], bool] | None
    events: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    cancel: threading.Event = field(default_factory=threading.Event)

    def ids(self) -> str:
        return (f"request_id=<{self.request_id}> | actor_id=<{self.request.actor_id}> | "
                f"session_id=<{self.request.session_id}>")

    def abandon(self) -> None:
        """The client went away: store none of this turn and stop the model at its next chunk."""
        self.hooks.skip_store = True
        self.cancel.set()

    async def watch_client(self) -> None:
        """Abandon the turn as soon as the client has hung up (checked every DISCONNECT_POLL_SECONDS)."""
        assert self.client_gone is not None
        while not self.cancel.is_set():
            await asyncio.sleep(DISCONNECT_POLL_SECONDS)
            if await asyncio.to_thread(self.client_gone):
                logger.info("%s | client disconnected mid-stream; cancelling the turn", self.ids())
                self.abandon()


def stream_events(turn: StreamedTurn, run: Callable[[StreamedTurn], None]) -> Iterator[Any]:
    """Run ``run(turn)`` on its own thread and yield what it puts on the turn's queue, to the end.

    The thread starts only once the runtime starts reading (an unread generator runs nothing);
    a generator closed before the end means the client went away: the turn is abandoned.
    """
    worker = threading.Thread(target=run, args=(turn,), name=f"stream-{turn.request.session_id}", daemon=True)
    worker.start()
    finished = False
    try:
        while (event := turn.events.get()) is not END_OF_STREAM:
            yield event
        finished = True
    finally:
        if not finished:
            turn.abandon()
