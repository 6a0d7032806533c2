"""The request service behind the entrypoint: validate, resolve identity, run one turn.

``agent.py`` only wires this to the AgentCore runtime. Errors are mapped to a
JSON body and an HTTP status here, once, and the request is logged here, once,
with its ids, outcome and latency (never the message text at INFO).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio.from_thread
import anyio.lowlevel
import botocore.exceptions
import httpx
import urllib3.exceptions
from bedrock_agentcore.runtime.context import BedrockAgentCoreContext
from starlette.responses import JSONResponse
from strands import Agent
from strands.models import Model
from strands.types.exceptions import EventLoopException, MaxTokensReachedException, ModelThrottledException

from config import Settings
from errors import AssistantError, BadRequest, InternalError, ModelError
from hooks.memory import MemoryHooks, reply_text, text_of
from identity import resolve_actor_id, resolve_session_id
from memory.base import SessionStore
from models import run_agent
from observability import ModelTimer, end_timings, format_phases, start_timings
from summary import Summarizer
from tools.session import SessionTools

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a helpful assistant. The earlier messages of this conversation are included above the "
    "newest one; use them to answer consistently."
)


#: put on a stream's queue after its last event
_END_OF_STREAM = object()
#: seconds between two checks, while a reply streams, that its HTTP client is still connected
DISCONNECT_POLL_SECONDS = 0.5

#: payload ``action`` values: session operations run without the model (see ``Assistant.run_action``)
ACTIONS = ("summarize_session", "clear_session")


#: response fields that go into the request's log line (never the reply or the summary text)
OUTCOME_FIELDS = ("action", "message_count", "history_length", "deleted", "truncated")


@dataclass
class RequestLine:
    """The one log line of one request: ids, backend, status, latency, phase timings, outcome."""

    request_id: str | None
    actor_id: str | None
    session_id: str | None
    backend: str
    started: float
    phases: dict[str, float]

    def log(self, status: int, outcome: str, fields: dict[str, Any] | None = None, exc_info: bool = False) -> None:
        latency = (time.perf_counter() - self.started) * 1e3
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        structured = {
            "request_id": self.request_id, "actor_id": self.actor_id, "session_id": self.session_id,
            "backend": self.backend, "status": status, "latency_ms": round(latency, 1),
            "phases_ms": {k: round(v, 1) for k, v in self.phases.items()}, **(fields or {}),
        }
        if status >= 400:
            structured["error"] = outcome
        logger.log(
            level, "request_id=<%s> | actor_id=<%s> | session_id=<%s> | backend=<%s> | status=<%d> | %.1f ms%s | %s",
            self.request_id, self.actor_id, self.session_id, self.backend, status, latency,
            format_phases(self.phases), outcome, exc_info=exc_info, extra={"fields": structured},
        )


@dataclass(frozen=True)
class ChatRequest:
    message: str | None  # None only for an action
    actor_id: str
    session_id: str
    action: str | None = None
    stream: bool = False


class KeyedLocks:
    """One lock per key, created on demand and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[object, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: object) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (None, 0))
            if lock is None:
                lock = threading.Lock()
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


def parse_request(payload: object, session_id: str | None, headers: Mapping[str, str] | None,
                  settings: Settings) -> ChatRequest:
    """Check the payload and the ids; raise ``BadRequest`` saying exactly what is wrong."""
    if not isinstance(payload, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(payload).__name__}")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be true or false, got {type(stream).__name__}")
    action = payload.get("action")
    if action is not None:
        if not isinstance(action, str) or action not in ACTIONS:
            raise BadRequest(f"unknown action {action!r}; known actions: {', '.join(ACTIONS)}")
        return ChatRequest(None, resolve_actor_id(payload, headers), resolve_session_id(session_id), action=action)
    message = payload.get("message")
    prompt = payload.get("prompt")
    if message is not None and prompt is not None and message != prompt:
        raise BadRequest("'message' and 'prompt' are the same field; send one of them")
    if message is None:
        message = prompt
    if message is None:
        raise BadRequest("'message' is required")
    if not isinstance(message, str):
        raise BadRequest(f"'message' must be a string, got {type(message).__name__}")
    if not message.strip():
        raise BadRequest("'message' must not be empty")
    if len(message) > settings.max_message_chars:
        raise BadRequest(
            f"'message' is {len(message)} characters long; the limit is {settings.max_message_chars} "
            "(MAX_MESSAGE_CHARS)"
        )
    return ChatRequest(
        message=message,
        actor_id=resolve_actor_id(payload, headers),
        session_id=resolve_session_id(session_id),
        stream=stream,
    )


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
class _StreamedTurn:
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


#: a model call that timed out, before or during its reply (a stall mid-stream is urllib3's, not a TimeoutError)
MODEL_TIMEOUTS = (TimeoutError, botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError,
                  urllib3.exceptions.TimeoutError, httpx.TimeoutException)
#: a model endpoint that cannot be reached right now
MODEL_UNREACHABLE = (botocore.exceptions.EndpointConnectionError, httpx.ConnectError, ConnectionRefusedError)
#: Bedrock errors that say "try again later"
RETRY_LATER_CODES = ("ServiceUnavailableException", "ModelNotReadyException", "ModelTimeoutException",
                     "ThrottlingException", "TooManyRequestsException")


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def model_error(error: Exception) -> ModelError:
    """A failed model call as the client should see it: 503 when trying again later may work, else 502."""
    while isinstance(error, EventLoopException):  # Strands' wrapper for a failure after a tool call
        error = error.original_exception
    detail = f"{type(error).__name__}: {error}"
    for cause in _causes(error):
        if isinstance(cause, ModelThrottledException):
            return ModelError(f"throttled: {detail}", status=503)
        if isinstance(cause, MODEL_TIMEOUTS):
            return ModelError(f"timed out: {detail}", status=503)
        if isinstance(cause, MODEL_UNREACHABLE):
            return ModelError(f"unreachable: {detail}", status=503)
        if isinstance(cause, botocore.exceptions.ClientError):
            if cause.response.get("Error", {}).get("Code") in RETRY_LATER_CODES:
                return ModelError(f"unavailable: {detail}", status=503)
    return ModelError(detail)


class Assistant:
    """Everything one process needs to answer requests: settings, one store, one model."""

    def __init__(self, settings: Settings, store: SessionStore, model: Model) -> None:
        self.settings = settings
        self.store = store
        self.model = model
        #: the one summariser: session tools, payload actions and the rolling summary all use it
        self.summarizer = Summarizer(model)
        self._session_locks = KeyedLocks()

    def memory_hooks(self, request: ChatRequest) -> MemoryHooks:
        """The memory hooks of one turn: the last ``MEMORY_K`` turns, the summary moved ``SUMMARY_BATCH`` at a time."""
        return MemoryHooks(self.store, request.actor_id, request.session_id, self.settings.memory_k,
                           batch=self.settings.fold_batch)

    def build_agent(self, hooks: MemoryHooks) -> Agent:
        """A fresh Agent per request: Strands Agents must not be shared by concurrent calls.

        Its session tools are bound to the hooks' (actor, session), never to ids the model
        could supply; with ``ROLLING_SUMMARY`` the hooks also keep the session's rolling summary.
        """
        if self.settings.rolling_summary and hooks.summarizer is None:
            hooks.summarizer = self.summarizer
        tools = SessionTools(self.store, hooks.actor_id, hooks.session_id, self.summarizer, hooks)
        # retry_strategy=None: Strands' default backs a throttled call off for ~2 minutes (4+8+...+64 s) while
        # the request and its session lock wait; fail fast with a 503 instead (the model client's own retries,
        # botocore's for Bedrock, still apply) and let the caller retry
        return Agent(model=self.model, system_prompt=SYSTEM_PROMPT, tools=tools.tools, hooks=[hooks, ModelTimer()],
                     callback_handler=None, retry_strategy=None)

    def run_action(self, request: ChatRequest) -> dict[str, Any]:
        """A session operation without the model (payload ``action``), through the tools' own code.

        Serialised with the session's chat turns, so a clear never races a turn being stored.
        """
        tools = SessionTools(self.store, request.actor_id, request.session_id, self.summarizer)
        with self._session_locks.hold((request.actor_id, request.session_id)):
            if request.action == "clear_session":
                result: dict[str, Any] = {"action": request.action, "deleted": tools.clear()}
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

    def chat_stream(self, request: ChatRequest,
                    client_gone: Callable[[], bool] | None = None) -> Iterator[str | dict[str, Any]]:
        """One turn streamed (payload ``"stream": true``): text deltas, then one final event.

        Returns a generator; the runtime sends each item as a Server-Sent Event. Deltas
        are JSON strings as the model writes them; the final event is an object with
        ``session_id``, ``actor_id``, ``message_count`` and ``history_length`` (or
        ``error``). The turn runs in its own thread, which holds the session's lock
        from start to end and stores the exchange once the model has finished. A client
        that goes away (``client_gone`` says so, or the generator is closed) cancels
        the turn, which then stores none of it; the lock is released when the turn
        stops, whoever reads the stream.
        """
        assert request.message is not None
        turn = _StreamedTurn(request, BedrockAgentCoreContext.get_request_id(),
                             self.memory_hooks(request), client_gone)
        return self._stream_events(turn)

    def _stream_events(self, turn: _StreamedTurn) -> Iterator[str | dict[str, Any]]:
        worker = threading.Thread(target=self._run_streamed_turn, args=(turn,),
                                  name=f"stream-{turn.request.session_id}", daemon=True)
        worker.start()  # only once the runtime starts reading: an unread generator runs nothing
        finished = False
        try:
            while (event := turn.events.get()) is not _END_OF_STREAM:
                yield event
            finished = True
        finally:
            if not finished:  # closed before the end: the client went away
                turn.abandon()

    def _run_streamed_turn(self, turn: _StreamedTurn) -> None:
        request, hooks = turn.request, turn.hooks
        started = time.perf_counter()
        status, outcome = 200, ""
        try:
            with self._session_locks.hold((request.actor_id, request.session_id)):
                if turn.cancel.is_set():
                    outcome = "client gone before the turn started; nothing stored"
                    return
                truncated = asyncio.run(self._stream_agent(self.build_agent(hooks), turn))
            if turn.cancel.is_set():
                outcome = f"client gone mid-stream; turn {'stored whole' if hooks.message_count else 'not stored'}"
                return
            final: dict[str, Any] = {
                "session_id": request.session_id,
                "actor_id": request.actor_id,
                "message_count": hooks.message_count or 0,
                "history_length": hooks.history_length,
            }
            if truncated:
                final["truncated"] = True
            turn.events.put(final)
            outcome = f"stream message_count={final['message_count']} history_length={hooks.history_length}" + (
                " truncated" if truncated else "")
        except Exception as e:  # any failure becomes the stream's final event, never a stack trace
            error = e if isinstance(e, AssistantError) else model_error(e)
            status, outcome = error.status, f"stream {error.message}"
            turn.events.put({**error.body(), "status": error.status})
        finally:
            turn.events.put(_END_OF_STREAM)
            (logger.info if status < 500 else logger.error)(
                "%s | backend=<%s> | status=<%d> | %.1f ms | %s", turn.ids(), self.store.name, status,
                (time.perf_counter() - started) * 1e3, outcome,
            )

    async def _stream_agent(self, agent: Agent, turn: _StreamedTurn) -> bool:
        """Run the agent, putting each text delta on the turn's queue; True when the reply was cut at MAX_TOKENS."""
        watcher = asyncio.create_task(turn.watch_client()) if turn.client_gone is not None else None
        try:
            async for event in agent.stream_async(turn.request.message, cancel_signal=turn.cancel):
                text = event.get("data")
                if isinstance(text, str) and text:
                    turn.events.put(text)
        except MaxTokensReachedException:
            self.keep_truncated_reply(agent, turn.hooks, turn.request)
            return True
        finally:
            if watcher is not None:
                watcher.cancel()
        return False

    def chat(self, request: ChatRequest) -> dict[str, Any]:
        """One turn: load history, ask the model, store the exchange. Serialised per session."""
        assert request.message is not None
        hooks = self.memory_hooks(request)
        with self._session_locks.hold((request.actor_id, request.session_id)):
            agent = self.build_agent(hooks)
            truncated = False
            try:
                reply = reply_text(run_agent(agent, request.message))
            except MaxTokensReachedException:
                reply, truncated = self.keep_truncated_reply(agent, hooks, request), True
            except AssistantError:
                raise
            except Exception as e:  # the model (or its client) failed; the store was not written
                raise model_error(e) from e
        body: dict[str, Any] = {
            "response": reply,
            "session_id": request.session_id,
            "actor_id": request.actor_id,
            "message_count": hooks.message_count or 0,
            "history_length": hooks.history_length,
        }
        if truncated:
            body["truncated"] = True  # the reply stopped at MAX_TOKENS
        return body

    def handle(self, payload: object, context: Any) -> dict[str, Any] | JSONResponse:
        """The entrypoint's body: returns the response dict, or a JSON error response.

        Every request that reaches it is logged here exactly once, whatever its outcome.
        """
        started = time.perf_counter()
        phases, token = start_timings()
        line = RequestLine(BedrockAgentCoreContext.get_request_id(), None, getattr(context, "session_id", None),
                           self.store.name, started, phases)
        try:
            request = parse_request(payload, line.session_id, getattr(context, "request_headers", None),
                                    self.settings)
            line.actor_id, line.session_id = request.actor_id, request.session_id
            if request.action is not None:
                body = self.run_action(request)
            elif request.stream:
                return self.chat_stream(request, client_gone_check(context))
            else:
                body = self.chat(request)
        except AssistantError as e:
            line.log(e.status, e.message)
            return JSONResponse(e.body(), status_code=e.status)
        except Exception as e:  # a bug: logged once, here, with its traceback; the caller gets no internals
            error = InternalError(line.request_id)
            line.log(error.status, f"{type(e).__name__}: {e}", exc_info=True)
            return JSONResponse(error.body(), status_code=error.status)
        finally:
            end_timings(token)
        line.log(200, " ".join(f"{k}={v}" for k, v in body.items() if k in OUTCOME_FIELDS),
                 {k: v for k, v in body.items() if k in OUTCOME_FIELDS})
        return body

    def close(self) -> None:
        self.store.close()
