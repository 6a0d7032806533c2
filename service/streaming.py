"""Streaming one turn (payload ``"stream": true``): the turn runs on a thread, its events reach the client.

``stream_turn`` runs the one turn pipeline (``service/turn.py``) with a sink for its text
deltas, then puts the final event (the body a plain request would get, or the error with its
status) and logs the request's line.

On the server the entrypoint returns a Starlette ``StreamingResponse`` over ``sse_body``,
an async iterator that awaits an ``EventChannel`` the turn's thread feeds: no thread
blocks on a queue while the client reads slowly. Called directly (tests, embedders),
``EventStream`` gives the same events as a plain iterator instead.

A client that hangs up (the server's ``ClientWatch`` says so, or the iterator is closed)
abandons the turn: it stores nothing, and the model stops at its next chunk.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from core.errors import AssistantError, InternalError
from memory.turn import TurnState
from service.logs import RequestLine
from service.requests import ChatRequest
from service.turn import EventSink, outcome_fields

logger = logging.getLogger(__name__)

#: put on a stream's queue after its last event
END_OF_STREAM = object()


class EventChannel:
    """A queue a thread puts into and a coroutine awaits, on whichever event loop reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[Any] = deque()
        self._reader: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    def put(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)
            reader, self._reader = self._reader, None
        if reader is not None:
            loop, future = reader
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # the server's loop has closed: nobody reads any more
                pass

    async def get(self) -> Any:
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                loop = asyncio.get_running_loop()
                future = loop.create_future()
                self._reader = (loop, future)
            await future


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class StreamedTurn:
    """One streamed turn, shared by the thread that runs it and whatever sends its events."""

    request: ChatRequest
    request_id: str | None
    state: TurnState
    events: EventSink = field(default_factory=queue.SimpleQueue)

    def ids(self) -> str:
        return f"request_id=<{self.request_id}> | {self.state.ids()}"

    def abandon(self) -> None:
        """The client went away: store none of this turn and stop the model at its next chunk."""
        self.state.abandon()

    def client_hung_up(self) -> None:
        """``ClientWatch`` callback: the HTTP client disconnected before the stream ended."""
        if not self.state.cancel.is_set():
            logger.info("%s | client disconnected mid-stream; cancelling the turn", self.ids())
            self.abandon()


def stream_turn(turn: StreamedTurn, line: RequestLine,
                run: Callable[[ChatRequest, TurnState, EventSink], dict[str, Any] | None]) -> None:
    """Run one streamed turn to its end (its session slot held), its events into ``turn.events``; log its line.

    The final event is the body a plain request gets without ``response`` (the text went as
    deltas), or ``error`` with the ``status`` a plain request would get. A client gone before
    the turn started runs nothing; one gone mid-stream gets no final event.
    """
    status, outcome, fields = 200, "", {}
    failure: BaseException | bool = False
    try:
        if turn.state.cancel.is_set():
            status, outcome = 499, "client gone before the turn started; nothing stored"
            return
        final = run(turn.request, turn.state, turn.events)
        if final is None:
            stored = "stored whole" if turn.state.message_count else "not stored"
            outcome = f"client gone mid-stream; turn {stored}"
            return
        turn.events.put(final)
        fields = outcome_fields(final)
        outcome = "stream " + " ".join(f"{k}={v}" for k, v in fields.items())
    except AssistantError as e:  # the stream's final event, with the status a plain request would get
        status, outcome = e.status, e.message
        turn.events.put({**e.body(), "status": e.status})
    except Exception as e:  # a bug: the client gets the request id, the log the traceback
        error = InternalError(line.request_id)
        status, outcome, failure = error.status, f"{type(e).__name__}: {e}", e
        turn.events.put({**error.body(), "status": error.status})
    finally:
        turn.events.put(END_OF_STREAM)
        line.log(status, outcome, {**fields, "stream": True}, exc_info=failure)


def sse(event: Any) -> bytes:
    """One Server-Sent Event, the bytes the AgentCore runtime sends for a generator's item."""
    try:
        return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from somewhere: escaped, never a broken stream
        return f"data: {json.dumps(event)}\n\n".encode("utf-8")


async def sse_body(turn: StreamedTurn, events: EventChannel) -> AsyncIterator[bytes]:
    """The response body of a streamed turn; closed before the end (client gone), it abandons the turn."""
    finished = False
    try:
        while (event := await events.get()) is not END_OF_STREAM:
            yield sse(event)
        finished = True
    finally:
        if not finished:
            turn.abandon()


class EventStream(Iterator[Any]):
    """A streamed turn as a plain iterator (direct calls): the turn's thread starts at the first ``next``.

    ``close()`` before the end means the caller went away: the turn is abandoned (and one
    never started runs nothing; ``on_unstarted`` is told, for the request's log line).
    """

    def __init__(self, turn: StreamedTurn, run: Callable[[StreamedTurn], None],
                 on_unstarted: Callable[[], None]) -> None:
        self.turn = turn
        self._run = run
        self._on_unstarted = on_unstarted
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        turn.events = self._events
        self._context = contextvars.copy_context()  # the request id and phase timings, for the turn's thread
        self._started = self._finished = False

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        if not self._started:
            self._started = True
            threading.Thread(target=self._context.run, args=(self._run, self.turn), daemon=True,
                             name=f"stream-{self.turn.request.session_id}").start()
        event = self._events.get()
        if event is END_OF_STREAM:
            self._finished = True
            raise StopIteration
        return event

    def close(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._started:
            self.turn.abandon()
        else:
            self._on_unstarted()
