"""The request service behind the entrypoint: validate, resolve identity, run one turn.

``agent.py`` only wires this to the AgentCore runtime. Errors are mapped to a
JSON body and an HTTP status here, once, and the request is logged here, once,
with its ids, outcome and latency (never the message text at INFO).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from bedrock_agentcore.runtime.context import BedrockAgentCoreContext
from starlette.responses import JSONResponse
from strands import Agent
from strands.models import Model
from strands.types.exceptions import MaxTokensReachedException

from core.errors import AssistantError, BadRequest, InternalError, ModelError
from core.settings import Settings
from core.timing import end_timings, start_timings
from hooks.memory import MemoryHooks
from hooks.model_timer import ModelTimer
from memory.base import SessionStore
from models.base import reply_text, run_agent, text_of
from models.summarizer import Summarizer
from service.failures import model_error
from service.locks import KeyedLocks
from service.logs import RequestLine
from service.requests import ChatRequest, parse_request
from service.streaming import END_OF_STREAM, StreamedTurn, client_gone_check, stream_events
from tools.session import SessionTools

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a helpful assistant. The earlier messages of this conversation are included above the "
    "newest one; use them to answer consistently."
)


#: response fields that go into the request's log line (never the reply or the summary text)
OUTCOME_FIELDS = ("action", "message_count", "history_length", "deleted", "truncated")


class Assistant:
    """Everything one process needs to answer requests: settings, one store, one model."""

    def __init__(self, settings: Settings, store: SessionStore, model: Model) -> None:
        self.settings = settings
        self.store = store
        self.model = model
        #: the one summariser: session tools, payload actions and the rolling summary all use it
        self.summarizer = Summarizer.for_settings(model, settings)
        self._session_locks = KeyedLocks()

    def memory_hooks(self, request: ChatRequest) -> MemoryHooks:
        """The memory hooks of one turn: the last ``MEMORY_K`` turns, the summary moved ``SUMMARY_BATCH`` at a time."""
        return MemoryHooks(self.store, request.actor_id, request.session_id, self.settings.memory_k,
                           batch=self.settings.fold_batch, max_tokens=self.settings.memory_max_tokens)

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
        turn = StreamedTurn(request, BedrockAgentCoreContext.get_request_id(),
                            self.memory_hooks(request), client_gone)
        return stream_events(turn, self._run_streamed_turn)

    def _run_streamed_turn(self, turn: StreamedTurn) -> None:
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
            turn.events.put(END_OF_STREAM)
            (logger.info if status < 500 else logger.error)(
                "%s | backend=<%s> | status=<%d> | %.1f ms | %s", turn.ids(), self.store.name, status,
                (time.perf_counter() - started) * 1e3, outcome,
            )

    async def _stream_agent(self, agent: Agent, turn: StreamedTurn) -> bool:
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
