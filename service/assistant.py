"""The request service behind the entrypoint: validate, resolve identity, run one turn.

``agent.py`` only wires this to the AgentCore runtime. Errors are mapped to a
JSON body and an HTTP status here, once, and the request is logged here, once,
with its ids, outcome and latency (never the message text at INFO).

Two doors, one path. The server calls ``serve`` (a coroutine, on the runtime's worker
event loop): the request waits for its session there, holding no thread, and the
blocking turn (Strands agent, store I/O) runs on ``TURN_WORKERS`` threads of our own,
never in the thread pool ``/ping`` needs. Direct callers (tests, embedders) call
``handle``, which does the same on the calling thread.

With long-term memory (``Assistant.ltm``), a turn also recalls the actor's records from
earlier sessions into the system prompt (``LongTermHooks``, after the memory hooks) and,
once its exchange is stored, queues it for the background writer; ``search_memory`` and
``forget`` are actions on the actor, and ``clear_session`` deletes the session's records.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import Token
from typing import Any

from bedrock_agentcore.runtime.context import BedrockAgentCoreContext
from starlette.responses import JSONResponse, Response, StreamingResponse
from strands import Agent
from strands.agent import AgentResult
from strands.models import Model
from strands.types.exceptions import MaxTokensReachedException

from core.errors import AssistantError, BadRequest, ClientGone, InternalError, ModelError, SessionBusy
from core.settings import Settings
from core.timing import end_timings, start_timings, timed
from hooks.longterm import LongTermHooks
from hooks.folds import FoldQueue
from hooks.memory import MemoryHooks
from hooks.model_timer import ModelTimer
from longterm import LongTermMemory, forget_action, search_action
from memory import probe_store
from memory.base import SessionStore, StoredReply
from models.base import reply_text, run_agent, text_of
from models.summarizer import Summarizer
from service.failures import model_error
from service.guard import ClientWatch, client_watch
from service.identity import check_single_valued
from service.logs import RequestLine
from service.requests import ACTOR_ACTIONS, ChatRequest, long_term_off, parse_request
from service.slots import Job, SessionSlots
from service.streaming import END_OF_STREAM, EventChannel, EventStream, StreamedTurn, sse_body
from service.views import history_body, memory_report, replay_body, sessions_body
from tools.longterm import LongTermTools
from tools.session import SessionTools

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a helpful assistant. The earlier messages of this conversation are included above the "
    "newest one; use them to answer consistently."
)


#: seconds a shutdown waits for queued rolling-summary folds; the rest are abandoned (no turn is lost)
FOLD_DRAIN_S = 10.0

#: response fields that go into the request's log line (never the reply or the summary text)
OUTCOME_FIELDS = ("action", "message_count", "history_length", "deleted", "truncated", "replayed", "memories_used",
                  "deleted_memories")


def session_key(request: ChatRequest) -> Hashable:
    return request.actor_id, request.session_id


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], outcome: Any) -> None:
    """From any thread: complete ``future`` with ``outcome`` (an exception is raised by it), if still pending."""
    def settle() -> None:
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop has closed (shutting down): nobody awaits it any more
        pass


def error_response(error: AssistantError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, SessionBusy) else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


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
        #: the ``TURN_WORKERS`` threads that run the server's turns (each started when first needed)
        self.turns = ThreadPoolExecutor(settings.turn_workers, thread_name_prefix="turn")
        #: one turn at a time per actor's session, ``SESSION_QUEUE_MAX`` waiting, the next refused (429)
        self.slots = SessionSlots(settings.session_queue_max, self.turns)

    @contextmanager
    def holding(self, request: ChatRequest) -> Iterator[None]:
        """The request's session slot, waited for on this thread (direct callers)."""
        key = session_key(request)
        self.slots.acquire_blocking(key)
        try:
            yield
        finally:
            self.slots.release(key)

    def memory_hooks(self, request: ChatRequest) -> MemoryHooks:
        """The memory hooks of one turn: the last ``MEMORY_K`` turns, the summary moved ``SUMMARY_BATCH`` at a time."""
        return MemoryHooks(self.store, request.actor_id, request.session_id, self.settings.memory_k,
                           batch=self.settings.fold_batch, max_tokens=self.settings.memory_max_tokens,
                           idempotency_key=request.idempotency_key, folds=self.folds)

    def longterm_hooks(self, hooks: MemoryHooks) -> LongTermHooks | None:
        """The long-term recall of one turn (None when long-term memory is off).

        It leaves out the turns of the window the memory hooks loaded (``loaded_turns``, read
        when it runs, after them), so the model never sees one exchange twice.
        """
        if self.ltm is None:
            return None
        s, session = self.settings, hooks.session_id
        return LongTermHooks(self.ltm, hooks.actor_id, session, top_k=s.ltm_top_k, min_score=s.ltm_min_score,
                             max_tokens=s.ltm_max_tokens, window=lambda: {(session, n) for n in hooks.loaded_turns})

    def build_agent(self, hooks: MemoryHooks, longterm: LongTermHooks | None = None) -> Agent:
        """A fresh Agent per request: Strands Agents must not be shared by concurrent calls.

        Its tools are bound to the hooks' (actor, session), never to ids the model could supply:
        the session tools, and with long-term memory ``search_memory`` over the actor's records.
        With ``ROLLING_SUMMARY`` the hooks also keep the session's rolling summary. Hook order
        matters: Strands runs ``BeforeInvocationEvent`` callbacks in registration order, so the
        window is loaded before ``longterm`` recalls (and leaves the window's turns out).
        """
        if self.settings.rolling_summary and hooks.summarizer is None:
            hooks.summarizer = self.summarizer
        tools = SessionTools(self.store, hooks.actor_id, hooks.session_id, self.summarizer, hooks, self.ltm).tools
        if self.ltm is not None:
            tools += LongTermTools(self.ltm, hooks.actor_id, self.settings.ltm_top_k).tools
        providers = [hooks, *([longterm] if longterm is not None else []), ModelTimer()]
        # retry_strategy=None: Strands' default backs a throttled call off for ~2 minutes (4+8+...+64 s) while
        # the request and its session lock wait; fail fast with a 503 instead (the model client's own retries,
        # botocore's for Bedrock, still apply) and let the caller retry
        return Agent(model=self.model, system_prompt=SYSTEM_PROMPT, tools=tools, hooks=providers,
                     callback_handler=None, retry_strategy=None)

    def remember(self, request: ChatRequest, hooks: MemoryHooks, longterm: LongTermHooks | None,
                 reply: str | None) -> None:
        """Queue the exchange this turn stored for long-term memory, under the window's generation.

        Only an exchange this request stored goes: not a replay (stored before, recorded then), not a
        turn that stored nothing (refused with a 409, cleared by its own ``clear_session`` tool, a
        client gone before the end, a failure). Best effort after the acknowledged store: a failure is
        a warning, never the turn's error (the client would retry a turn that was stored).
        """
        if longterm is None or reply is None or hooks.message_count is None or hooks.replayed is not None \
                or hooks.generation is None:
            return
        try:
            longterm.record(hooks.message_count, (request.message or "").strip(), reply, generation=hooks.generation)
        except Exception as e:
            logger.warning("actor_id=<%s> | session_id=<%s> | turn %d not recorded in long-term memory: %s: %s",
                           request.actor_id, request.session_id, hooks.message_count, type(e).__name__, e)

    def run_action(self, request: ChatRequest) -> dict[str, Any]:
        """An operation without the model (payload ``action``), serialised with the session's turns.

        A session's action holds its session slot, so a clear never races a turn being stored and
        a history page never shows half a turn. ``list_sessions`` reads the actor's index, no one
        session: it takes no slot, so a running turn never delays the list.
        """
        if request.action in ACTOR_ACTIONS:
            return self.actor_action(request)
        with self.holding(request):
            return self._action(request)

    def actor_action(self, request: ChatRequest) -> dict[str, Any]:
        """An action on the actor, not one session: ``list_sessions``, ``search_memory``, ``forget``. No session slot.

        ``forget`` needs none to beat a write in flight: every long-term write carries the actor's
        epoch read when its turn started and is refused once ``forget`` has moved it on.
        """
        if request.action == "list_sessions":
            return self.list_sessions(request)
        if self.ltm is None:  # parse_request refuses these first; a direct caller may not have
            raise long_term_off(str(request.action), self.settings)
        with timed("longterm_search" if request.action == "search_memory" else "longterm_write"):
            if request.action == "search_memory":
                assert request.search is not None
                body = search_action(self.ltm, request.actor_id, request.search)
            else:
                body = forget_action(self.ltm, request.actor_id)
        return {**body, "actor_id": request.actor_id}

    def list_sessions(self, request: ChatRequest) -> dict[str, Any]:
        """One page of the actor's sessions, newest activity first (``InvalidCursor``: a 400)."""
        assert request.limit is not None
        with timed("store_read"):
            page = self.store.list_sessions(request.actor_id, request.limit, request.cursor)
        return sessions_body(request.actor_id, page)

    def history(self, request: ChatRequest) -> dict[str, Any]:
        """One page of the session's turns (newest page first), its count and its rolling summary."""
        assert request.limit is not None
        actor, session = request.actor_id, request.session_id
        with timed("store_read"):
            page = self.store.get_history(actor, session, request.limit, request.before)
            newest = page if request.before is None else self.store.get_history(actor, session, 1)
            summary = self.store.get_summary(actor, session)
        # the newest turn's number is the session's message count (turn n is the n-th user message)
        message_count = newest.turns[-1].turn if newest.turns else 0
        return history_body(actor, session, message_count, page, summary)

    def _action(self, request: ChatRequest) -> dict[str, Any]:
        """``run_action``'s work for a session's action, with the session slot already held."""
        if request.action == "get_history":
            return self.history(request)
        tools = SessionTools(self.store, request.actor_id, request.session_id, self.summarizer, ltm=self.ltm)
        if request.action == "clear_session":
            cleared = tools.clear()
            result: dict[str, Any] = {"action": request.action, "deleted": cleared.events}
            if cleared.memories is not None:
                result["deleted_memories"] = cleared.memories
        elif request.action == "summarize_session":
            try:
                result = {"action": request.action, "summary": tools.summarize()}
            except AssistantError:
                raise
            except Exception as e:  # the summary model call failed; nothing was stored
                raise model_error(e) from e
        else:  # parse_request only lets ACTIONS through
            raise BadRequest(f"unknown action {request.action!r}")
        return {**result, "session_id": request.session_id, "actor_id": request.actor_id}

    def keep_truncated_reply(self, agent: Agent, hooks: MemoryHooks, request: ChatRequest) -> str:
        """The model hit ``MAX_TOKENS``: return and store the partial reply, since it is what the user gets.

        Strands raises ``MaxTokensReachedException`` with the partial reply left in the
        agent's messages and no result, so the memory hooks stored nothing; store it here.
        """
        last = agent.messages[-1] if agent.messages else None
        reply = text_of(last).strip() if last is not None and last["role"] == "assistant" else ""
        if not reply:
            raise ModelError(f"the model reached MAX_TOKENS={self.settings.max_tokens} before writing any text")
        if not hooks.skip_store:
            hooks.store_exchange(request.message or "", reply)
        return reply

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
        turn = StreamedTurn(request, line.request_id, self.memory_hooks(request))

        def run(turn: StreamedTurn) -> None:
            try:
                with self.holding(request):
                    self._run_streamed_turn(turn, line)
            except SessionBusy as e:  # the stream's one event, as a plain request's 429
                line.log(e.status, e.message)
                turn.events.put({**e.body(), "status": e.status})
                turn.events.put(END_OF_STREAM)

        return EventStream(turn, run, lambda: line.log(499, "stream closed before it started; nothing run"))

    async def _serve_stream(self, request: ChatRequest, line: RequestLine,
                            watch: ClientWatch | None) -> StreamingResponse:
        """The server's streamed turn: SSE from an async iterator, returned once the turn holds its session.

        The turn's thread feeds an ``EventChannel``; no thread blocks on a slow reader. A client
        that leaves while the request waits takes it out of the queue; one that leaves later
        cancels the turn (which then stores nothing).
        """
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        events = EventChannel()
        turn = StreamedTurn(request, line.request_id, self.memory_hooks(request), events=events)
        context = contextvars.copy_context()  # the request id and the phase timings

        def run() -> None:
            _settle(loop, started, None)
            context.run(self._run_streamed_turn, turn, line)

        key, job = session_key(request), Job(run)
        self.slots.submit(key, job)
        response = StreamingResponse(sse_body(turn, events), media_type="text/event-stream")

        def client_gone() -> None:
            if self.slots.withdraw(key, job):
                _settle(loop, started, ClientGone("the client hung up while waiting for its session"))
            else:
                turn.client_hung_up()

        if watch is not None:
            watch.on_gone(client_gone)
        try:
            await started
        except asyncio.CancelledError:
            if not self.slots.withdraw(key, job):
                turn.abandon()
            raise
        return response

    async def _on_turn_thread(self, work: Callable[[ChatRequest], dict[str, Any]],
                              request: ChatRequest) -> dict[str, Any]:
        """``work(request)`` on a turn thread without a session slot (store I/O never blocks the event loop)."""
        context = contextvars.copy_context()  # the request id and the phase timings
        return await asyncio.get_running_loop().run_in_executor(self.turns, context.run, work, request)

    async def _in_session(self, request: ChatRequest, watch: ClientWatch | None,
                          work: Callable[[ChatRequest], dict[str, Any]]) -> dict[str, Any]:
        """``work(request)`` on a turn thread, holding the session's slot; awaited without holding a thread.

        A client that leaves while the request waits takes it out of the queue (``ClientGone``);
        a turn already running is finished and stored, as a plain request always was.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[dict[str, Any]] = loop.create_future()
        context = contextvars.copy_context()  # the request id and the phase timings

        def run() -> None:
            try:
                body = context.run(work, request)
            except BaseException as e:  # handed to the awaiting coroutine, which maps and logs it
                _settle(loop, done, e)
            else:
                _settle(loop, done, body)

        key, job = session_key(request), Job(run)
        self.slots.submit(key, job)

        def client_gone() -> None:
            if self.slots.withdraw(key, job):
                _settle(loop, done, ClientGone("the client hung up while waiting for its session"))

        if watch is not None:
            watch.on_gone(client_gone)
        try:
            return await done
        except asyncio.CancelledError:
            self.slots.withdraw(key, job)
            raise

    def _run_streamed_turn(self, turn: StreamedTurn, line: RequestLine) -> None:
        """Run one streamed turn to its end (the session slot held), its events into ``turn.events``; log its line."""
        request, hooks = turn.request, turn.hooks
        status, outcome, fields = 200, "", {}
        failure: BaseException | bool = False
        try:
            if turn.cancel.is_set():
                status, outcome = 499, "client gone before the turn started; nothing stored"
                return
            stored = self.stored_reply(request)
            if stored is not None:  # a retry of a stored turn: its reply as one delta, no model call
                turn.events.put(stored.reply)
                final: dict[str, Any] = self.replayed(request, stored)
            else:
                longterm = self.longterm_hooks(hooks)
                reply, truncated = asyncio.run(self._stream_agent(self.build_agent(hooks, longterm), turn))
                self.remember(request, hooks, longterm, reply)
                if turn.cancel.is_set():
                    outcome = f"client gone mid-stream; turn {'stored whole' if hooks.message_count else 'not stored'}"
                    return
                final = self.turn_body(request, hooks, None, truncated, longterm)
            turn.events.put(final)
            fields = {k: v for k, v in final.items() if k in OUTCOME_FIELDS}
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

    async def _stream_agent(self, agent: Agent, turn: StreamedTurn) -> tuple[str | None, bool]:
        """Run the agent, putting each text delta on the turn's queue.

        Returns the reply as the memory hooks stored it (None if the run ended without a result)
        and whether it was cut at MAX_TOKENS.
        """
        reply: str | None = None
        try:
            async for event in agent.stream_async(turn.request.message, cancel_signal=turn.cancel):
                text = event.get("data")
                if isinstance(text, str) and text:
                    turn.events.put(text)
                elif isinstance(event.get("result"), AgentResult):
                    reply = reply_text(event["result"])
        except MaxTokensReachedException:
            return self.keep_truncated_reply(agent, turn.hooks, turn.request), True
        except AssistantError:
            raise
        except Exception as e:  # the model (or its client) failed; the store was not written
            raise model_error(e) from e
        return reply, False

    def chat(self, request: ChatRequest) -> dict[str, Any]:
        """One turn: load history, ask the model, store the exchange. Serialised per session."""
        with self.holding(request):
            return self._chat(request)

    def stored_reply(self, request: ChatRequest) -> StoredReply | None:
        """The turn already stored under the request's idempotency key (a retry), checked before the model runs."""
        if request.idempotency_key is None:
            return None
        with timed("store_read"):
            return self.store.find_request(request.actor_id, request.session_id, request.idempotency_key)

    def replayed(self, request: ChatRequest, stored: StoredReply) -> dict[str, Any]:
        """The stored turn's answer again: nothing was loaded or recalled for it (``memories_used`` 0)."""
        body = replay_body(request.session_id, request.actor_id, stored, request.explain)
        if self.ltm is not None:
            body["memories_used"] = 0
        return body

    def turn_body(self, request: ChatRequest, hooks: MemoryHooks, reply: str | None, truncated: bool,
                  longterm: LongTermHooks | None = None) -> dict[str, Any]:
        """A turn's answer (``reply`` None: the stream's final event, the text went as deltas).

        When another request stored this idempotency key first (a concurrent retry, on any replica),
        the answer is that stored turn, ``replayed``, not this run's reply. With long-term memory
        on, ``memories_used`` counts the records recalled into the system prompt.
        """
        if hooks.replayed is not None:
            return self.replayed(request, hooks.replayed)
        body: dict[str, Any] = {} if reply is None else {"response": reply}
        body.update(session_id=request.session_id, actor_id=request.actor_id,
                    message_count=hooks.message_count or 0, history_length=hooks.history_length)
        if longterm is not None:
            body["memories_used"] = longterm.memories_used
        if truncated:
            body["truncated"] = True  # the reply stopped at MAX_TOKENS
        if request.explain:
            body["memory"] = memory_report(hooks.loaded_turns, hooks.summary_in_prompt,
                                           longterm.injected if longterm is not None else None)
        return body

    def _chat(self, request: ChatRequest) -> dict[str, Any]:
        """``chat``'s work, with the session slot already held."""
        assert request.message is not None
        stored = self.stored_reply(request)
        if stored is not None:  # a retry of a stored turn: its answer again, no model call, nothing stored
            return self.replayed(request, stored)
        hooks = self.memory_hooks(request)
        longterm = self.longterm_hooks(hooks)
        agent = self.build_agent(hooks, longterm)
        truncated = False
        try:
            reply = reply_text(run_agent(agent, request.message))
        except MaxTokensReachedException:
            reply, truncated = self.keep_truncated_reply(agent, hooks, request), True
        except AssistantError:
            raise
        except Exception as e:  # the model (or its client) failed; the store was not written
            raise model_error(e) from e
        self.remember(request, hooks, longterm, reply)
        return self.turn_body(request, hooks, reply, truncated, longterm)

    # -- the two doors ---------------------------------------------------------------------------

    def _begin(self, context: Any) -> tuple[RequestLine, Token[dict[str, float] | None]]:
        phases, token = start_timings()
        line = RequestLine(BedrockAgentCoreContext.get_request_id(), None, getattr(context, "session_id", None),
                           self.store.name, time.perf_counter(), phases)
        return line, token

    def _parse(self, payload: object, context: Any, line: RequestLine) -> ChatRequest:
        http_request = getattr(context, "request", None)
        if http_request is not None and hasattr(http_request, "headers"):
            check_single_valued(http_request.headers.getlist)
        request = parse_request(payload, line.session_id, getattr(context, "request_headers", None), self.settings,
                                long_term=self.ltm is not None)
        line.actor_id = request.actor_id
        line.session_id = request.session_id or line.session_id  # list_sessions has none of its own
        return request

    @staticmethod
    def _refused(line: RequestLine, error: AssistantError) -> JSONResponse:
        line.log(error.status, error.message)
        return error_response(error)

    @staticmethod
    def _failed(line: RequestLine, bug: Exception) -> JSONResponse:
        """A bug: logged once, here, with its traceback; the caller gets the request id, no internals."""
        error = InternalError(line.request_id)
        line.log(error.status, f"{type(bug).__name__}: {bug}", exc_info=bug)
        return error_response(error)

    @staticmethod
    def _answered(line: RequestLine, body: dict[str, Any]) -> dict[str, Any]:
        line.log(200, " ".join(f"{k}={v}" for k, v in body.items() if k in OUTCOME_FIELDS),
                 {k: v for k, v in body.items() if k in OUTCOME_FIELDS})
        return body

    def handle(self, payload: object, context: Any) -> dict[str, Any] | JSONResponse | EventStream:
        """For direct callers: the response dict, a JSON error response, or (streaming) an ``EventStream``.

        Runs on the calling thread, which waits for the session if a turn of it is running.
        Every request is logged exactly once, whatever its outcome.
        """
        line, token = self._begin(context)
        try:
            request = self._parse(payload, context, line)
            if request.action is not None:
                body = self.run_action(request)
            elif request.stream:
                return self.chat_stream(request, line)
            else:
                body = self.chat(request)
        except AssistantError as e:
            return self._refused(line, e)
        except Exception as e:
            return self._failed(line, e)
        finally:
            end_timings(token)
        return self._answered(line, body)

    async def serve(self, payload: object, context: Any) -> dict[str, Any] | Response:
        """The server's entrypoint body, on the runtime's worker event loop: never blocks it, never holds a thread.

        The request queues for its session (``SESSION_QUEUE_MAX`` at most; the next is a 429)
        and its turn runs on a turn thread; a waiter whose client hangs up leaves the queue.
        Every request is logged exactly once, whatever its outcome.
        """
        line, token = self._begin(context)
        try:
            request = self._parse(payload, context, line)
            watch = client_watch(context)
            if request.stream:
                return await self._serve_stream(request, line, watch)
            if request.action in ACTOR_ACTIONS:
                body = await self._on_turn_thread(self.actor_action, request)
            else:
                body = await self._in_session(request, watch,
                                              self._action if request.action is not None else self._chat)
        except AssistantError as e:
            return self._refused(line, e)
        except Exception as e:
            return self._failed(line, e)
        finally:
            end_timings(token)
        return self._answered(line, body)

    def probe_store(self) -> None:
        """Warn at start-up when a networked store does not answer, not only 503 on the first request."""
        probe_store(self.store)  # as the backend's registry entry says (nothing to probe for most)

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
