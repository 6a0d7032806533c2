"""The request service behind the entrypoint: parse, take the session's slot, run the turn or action, answer.

``agent.py`` only wires this to the AgentCore runtime. The turn itself is ``service/turn.py``
(one pipeline for every transport); an action is an entry of ``service/actions.py``. Here are
only the transports, thin adapters onto those two:

- ``serve`` (the server's, a coroutine on the runtime's worker event loop): the request waits for
  its session there, holding no thread, and its work (the Strands agent, store I/O) runs on
  ``TURN_WORKERS`` turn threads of our own, each keeping one event loop for the agent
  (``service/loops.py``), never in the thread pool ``/ping`` needs;
- ``handle`` (direct callers: tests, embedders): the same on the calling thread;
- streamed (``"stream": true``): SSE over an async iterator on the server, an ``EventStream``
  iterator for direct callers.

Errors are mapped to a JSON body and an HTTP status in one place (``responding``), and every
request is logged there once, with its ids, outcome and latency (never the message text at INFO).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bedrock_agentcore.runtime.context import BedrockAgentCoreContext
from starlette.responses import JSONResponse, Response, StreamingResponse
from strands.models import Model

from core.errors import AssistantError, InternalError, SessionBusy
from core.settings import Settings
from core.timing import end_timings, start_timings
from hooks.folds import FoldQueue
from longterm import LongTermMemory
from memory.base import SessionStore
from models.summarizer import Summarizer
from service.actions import run_action
from service.guard import ClientWatch, client_watch
from service.identity import check_single_valued
from service.logs import RequestLine
from service.loops import keep_loop
from service.requests import ChatRequest, parse_request
from service.slots import SessionSlots
from service.streaming import END_OF_STREAM, EventChannel, EventStream, StreamedTurn, sse_body, stream_turn
from service.turn import SYSTEM_PROMPT, TurnPipeline, outcome_fields

__all__ = ["SYSTEM_PROMPT", "Assistant", "error_response"]

logger = logging.getLogger(__name__)

#: seconds a shutdown waits for queued rolling-summary folds; the rest are abandoned (no turn is lost)
FOLD_DRAIN_S = 10.0


def session_key(request: ChatRequest) -> Hashable:
    return request.actor_id, request.session_id


def error_response(error: AssistantError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, SessionBusy) else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


@dataclass
class Exchange:
    """One request being answered: its log line, and its response once there is one."""

    line: RequestLine
    response: Any = None


class Assistant:
    """Everything one process needs to answer requests: settings, one store, one model, long-term memory or none.

    ``ltm`` (``longterm.create_long_term``, built by ``agent.build_assistant``): each turn recalls the
    actor's records from earlier sessions and records its stored exchange; ``search_memory`` and
    ``forget`` answer from it; ``clear_session`` deletes the session's records too. None: off (the
    responses carry no long-term fields, and the two actions are a 400 saying so).
    """

    def __init__(self, settings: Settings, store: SessionStore, model: Model,
                 ltm: LongTermMemory | None = None) -> None:
        self.settings = settings
        self.store = store
        self.model = model
        #: the process's long-term memory (None: off); closed (its writer drained) by ``close``
        self.ltm = ltm
        #: the one summariser: session tools, payload actions and the rolling summary all use it
        self.summarizer = Summarizer.for_settings(model, settings)
        #: rolling-summary folds, run after the replies on ``SUMMARY_WORKERS`` threads, drained by ``close``
        self.folds = FoldQueue(settings.summary_workers)
        #: the one turn pipeline every transport runs
        self.pipeline = TurnPipeline(self)
        #: the ``TURN_WORKERS`` threads that run the server's turns (each started when first needed, with its loop)
        self.turns = ThreadPoolExecutor(settings.turn_workers, thread_name_prefix="turn", initializer=keep_loop)
        #: one turn at a time per actor's session, ``SESSION_QUEUE_MAX`` waiting, the next refused (429)
        self.slots = SessionSlots(settings.session_queue_max, self.turns)

    # -- the work of one request, without its transport -------------------------------------------

    def chat(self, request: ChatRequest) -> dict[str, Any]:
        """One turn: load history, ask the model, store the exchange. Serialised per session."""
        with self.holding(request):
            return self.turn(request)

    def turn(self, request: ChatRequest) -> dict[str, Any]:
        """``chat``'s work, with the session slot already held."""
        body = self.pipeline.run(request, self.pipeline.new_state(request))
        assert body is not None
        return body

    def action(self, request: ChatRequest) -> dict[str, Any]:
        """An action's answer (with its session slot already held when it takes one)."""
        assert request.action is not None
        return run_action(self, request.action, request.actor_id, request.session_id, request.fields)

    def run_action(self, request: ChatRequest) -> dict[str, Any]:
        """An operation without the model (payload ``action``), holding its session's slot when it takes one."""
        assert request.action is not None
        if not request.action.per_session:
            return self.action(request)
        with self.holding(request):
            return self.action(request)

    @contextmanager
    def holding(self, request: ChatRequest) -> Iterator[None]:
        """The request's session slot, waited for on this thread (direct callers)."""
        key = session_key(request)
        self.slots.acquire_blocking(key)
        try:
            yield
        finally:
            self.slots.release(key)

    # -- the two doors, and their one error tail ------------------------------------------------------

    @contextmanager
    def responding(self, context: Any) -> Iterator[Exchange]:
        """A request's one log line and its error mapping: an ``AssistantError`` its status, a bug a 500."""
        phases, token = start_timings()
        exchange = Exchange(RequestLine(BedrockAgentCoreContext.get_request_id(), None,
                                        getattr(context, "session_id", None), self.store.name, time.perf_counter(),
                                        phases))
        line = exchange.line
        try:
            yield exchange
        except AssistantError as e:
            line.log(e.status, e.message)
            exchange.response = error_response(e)
        except Exception as e:  # a bug: logged once, with its traceback; the caller gets the request id
            error = InternalError(line.request_id)
            line.log(error.status, f"{type(e).__name__}: {e}", exc_info=e)
            exchange.response = error_response(error)
        else:
            if isinstance(exchange.response, dict):  # a stream logs its own line when it ends
                fields = outcome_fields(exchange.response)
                line.log(200, " ".join(f"{k}={v}" for k, v in fields.items()), fields)
        finally:
            end_timings(token)

    def parse(self, payload: object, context: Any, line: RequestLine) -> ChatRequest:
        http_request = getattr(context, "request", None)
        if http_request is not None and hasattr(http_request, "headers"):
            check_single_valued(http_request.headers.getlist)
        request = parse_request(payload, line.session_id, getattr(context, "request_headers", None), self.settings,
                                long_term=self.ltm is not None)
        line.actor_id = request.actor_id
        line.session_id = request.session_id or line.session_id  # an action on the actor has none of its own
        return request

    def handle(self, payload: object, context: Any) -> dict[str, Any] | JSONResponse | EventStream:
        """For direct callers: the response dict, a JSON error response, or (streaming) an ``EventStream``.

        Runs on the calling thread, which waits for the session if a turn of it is running.
        """
        with self.responding(context) as exchange:
            request = self.parse(payload, context, exchange.line)
            if request.action is not None:
                exchange.response = self.run_action(request)
            elif request.stream:
                exchange.response = self.chat_stream(request, exchange.line)
            else:
                exchange.response = self.chat(request)
        return exchange.response

    async def serve(self, payload: object, context: Any) -> dict[str, Any] | Response:
        """The server's entrypoint body, on the runtime's worker event loop: never blocks it, never holds a thread.

        The request queues for its session (``SESSION_QUEUE_MAX`` at most; the next is a 429)
        and its work runs on a turn thread; a waiter whose client hangs up leaves the queue.
        """
        with self.responding(context) as exchange:
            request = self.parse(payload, context, exchange.line)
            watch = client_watch(context)
            if request.stream:
                exchange.response = await self.serve_stream(request, exchange.line, watch)
            elif request.action is not None and not request.action.per_session:
                context_copy = contextvars.copy_context()  # the request id and the phase timings
                exchange.response = await asyncio.get_running_loop().run_in_executor(
                    self.turns, context_copy.run, self.action, request)
            else:
                work = self.action if request.action is not None else self.turn
                exchange.response = await self.in_session(request, watch, lambda answer: work(request))
        return exchange.response

    async def in_session(self, request: ChatRequest, watch: ClientWatch | None,
                         work: Callable[[Callable[[Any], None]], Any],
                         gone_running: Callable[[], None] | None = None) -> Any:
        """``work`` on a turn thread holding the session's slot, awaited without a thread (``SessionSlots.run``)."""
        return await self.slots.run(session_key(request), contextvars.copy_context(), work,
                                    watch.on_gone if watch is not None else None, gone_running)

    async def serve_stream(self, request: ChatRequest, line: RequestLine,
                           watch: ClientWatch | None) -> StreamingResponse:
        """The server's streamed turn: SSE from an async iterator, returned once the turn holds its session.

        The turn's thread feeds an ``EventChannel``; no thread blocks on a slow reader. A client
        that leaves later than that cancels the turn (which then stores nothing).
        """
        events = EventChannel()
        turn = StreamedTurn(request, line.request_id, self.pipeline.new_state(request), events=events)
        response = StreamingResponse(sse_body(turn, events), media_type="text/event-stream")

        def work(answer: Callable[[Any], None]) -> StreamingResponse:
            answer(response)  # the turn holds its session: the response starts
            stream_turn(turn, line, self.pipeline.run)
            return response

        return await self.in_session(request, watch, work, turn.client_hung_up)

    def chat_stream(self, request: ChatRequest, line: RequestLine | None = None) -> EventStream:
        """One turn streamed, for a direct caller: an iterator of text deltas, then one final event.

        Deltas are JSON strings as the model writes them; the final event is an object with
        ``session_id``, ``actor_id``, ``message_count`` and ``history_length`` (or ``error``
        and ``status``). The turn runs on its own thread from the first ``next``, which holds
        the session slot from start to end and stores the exchange once the model has
        finished. Closing the iterator early cancels the turn, which then stores none of it.
        """
        assert request.message is not None
        line = line or RequestLine(BedrockAgentCoreContext.get_request_id(), request.actor_id, request.session_id,
                                   self.store.name, time.perf_counter(), {})
        turn = StreamedTurn(request, line.request_id, self.pipeline.new_state(request))

        def run(turn: StreamedTurn) -> None:
            try:
                with self.holding(request):
                    stream_turn(turn, line, self.pipeline.run)
            except SessionBusy as e:  # the stream's one event, as a plain request's 429
                line.log(e.status, e.message)
                turn.events.put({**e.body(), "status": e.status})
                turn.events.put(END_OF_STREAM)

        return EventStream(turn, run, lambda: line.log(499, "stream closed before it started; nothing run"))

    def close(self) -> None:
        """Finish the running turns and (for up to ``FOLD_DRAIN_S``) the waiting summary folds, drain long-term
        memory's writer (nothing queued is lost), close the store."""
        try:
            self.turns.shutdown(wait=True)
            self.folds.close(FOLD_DRAIN_S)
            if self.ltm is not None:
                self.ltm.close()
        finally:
            self.store.close()
