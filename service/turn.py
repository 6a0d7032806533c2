"""The turn: every chat request, plain or streamed, from a server or a direct caller, runs ``TurnPipeline.run``.

Its steps, in order (``run`` reads top to bottom; the middle three run inside the Strands agent's
invocation, as hooks registered in this order):

1. **replay check**: a retry of a stored turn (same idempotency key) gets that turn's answer again;
   no model call, nothing stored;
2. **load window** (+ rolling summary): ``MemoryHooks.load_window``;
3. **recall long-term**: ``LongTermHooks.recall`` (leaves out the window's turns);
4. **model**: the agent's call(s), tools included; its failures mapped to 502/503 here;
5. **store turn**: ``MemoryHooks.store_turn`` (a reply cut at ``MAX_TOKENS`` is stored here instead);
6. **long-term record**: the stored exchange queued for the background writer;
7. **reply body**;
8. after the reply: **fold** the rolling summary (queued; ``hooks/summary.py``).

The turn's state is one ``TurnState`` (``memory/turn.py``), created here per turn and handed to
the hooks, the tools and the streaming code; nothing sets attributes on a hook from outside.
Transports (``service/assistant.py``: plain or SSE, sync or async) only decide where ``run`` runs
and where its text goes: ``deltas`` None for a plain turn, an ``EventSink`` for a streamed one.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from strands import Agent
from strands.agent import AgentResult
from strands.models import Model
from strands.types.exceptions import MaxTokensReachedException

from core.errors import AssistantError, ModelError
from core.settings import Settings
from core.telemetry import memory_step
from core.timing import timed
from hooks.folds import FoldQueue
from hooks.longterm import LongTermHooks
from hooks.memory import MemoryHooks
from hooks.model_timer import ModelTimer
from hooks.summary import RollingSummary
from longterm import LongTermMemory
from memory.base import SessionStore, StoredReply
from memory.turn import TurnState
from models.base import reply_text, text_of
from models.summarizer import Summarizer
from service.failures import model_error
from service.loops import run_here
from service.requests import ChatRequest
from service.tracing import traced_turn
from service.views import memory_report, replay_body
from tools.longterm import LongTermTools
from tools.session import SessionTools

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a helpful assistant. The earlier messages of this conversation are included above the "
    "newest one; use them to answer consistently."
)

#: response fields that go into the request's log line (never the reply or the summary text)
OUTCOME_FIELDS = ("action", "message_count", "history_length", "deleted", "truncated", "replayed", "memories_used",
                  "deleted_memories")


def outcome_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of a response body that its log line carries."""
    return {k: v for k, v in body.items() if k in OUTCOME_FIELDS}


class EventSink(Protocol):
    """Where a streamed turn's events go (a queue a thread or a coroutine reads)."""

    def put(self, item: Any) -> None: ...


class Parts(Protocol):
    """What a turn is made with: the process's settings, store, model, long-term memory, summariser, fold queue.

    Read per turn (``Assistant`` is one), so settings changed on a running assistant apply to its next turn.
    """

    settings: Settings
    store: SessionStore
    model: Model
    ltm: LongTermMemory | None
    summarizer: Summarizer
    folds: FoldQueue


class TurnPipeline:
    """The one turn of this process, made with its ``parts``. Thread-safe: a turn's state is its ``TurnState``."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    @property
    def settings(self) -> Settings:
        return self.parts.settings

    @property
    def store(self) -> SessionStore:
        return self.parts.store

    @property
    def ltm(self) -> LongTermMemory | None:
        return self.parts.ltm

    def rolling(self) -> RollingSummary | None:
        """The rolling summary's folds under the current settings (None: ``ROLLING_SUMMARY=off``)."""
        s = self.settings
        if not s.rolling_summary:
            return None
        return RollingSummary(self.store, self.parts.summarizer, s.memory_k, s.fold_batch, s.memory_max_tokens,
                              self.parts.folds)

    def new_state(self, request: ChatRequest) -> TurnState:
        return TurnState(request.actor_id, request.session_id, request.message or "",
                         idempotency_key=request.idempotency_key)

    @traced_turn
    def run(self, request: ChatRequest, state: TurnState, deltas: EventSink | None = None) -> dict[str, Any] | None:
        """One turn, top to bottom; the response body (streamed: the final event, the text went to ``deltas``).

        None: a streamed turn whose client left (``state.cancel``) before its reply was out.
        Raises an ``AssistantError`` (the turn's 4xx/5xx); nothing is stored when it does.
        """
        # 1. replay check: a retry of a stored turn gets that turn's answer again; no model call, nothing stored
        stored = self.stored_reply(request)
        if stored is not None:
            if deltas is not None:
                deltas.put(stored.reply)
            return self.replayed(request, stored)
        # 2.-5. load window (+ summary), recall long-term, model, store turn: the agent and its hooks, in this order
        agent, hooks = self.build_agent(state)
        reply = run_here(lambda: self.call_model(agent, hooks, deltas))
        # 6. long-term record of the exchange this turn stored
        self.remember(state)
        # 7. reply body (none for a streamed turn whose client left)
        streamed = deltas is not None
        gone = streamed and state.cancel.is_set()
        body = None if gone else self.turn_body(request, state, None if streamed else reply)
        # 8. fold the rolling summary: queued, it runs after the reply is out
        rolling = self.rolling()
        if rolling is not None:
            rolling.after_turn(state)
        return body

    def stored_reply(self, request: ChatRequest) -> StoredReply | None:
        """The turn already stored under the request's idempotency key (a retry), checked before the model runs."""
        if request.idempotency_key is None:
            return None
        with timed("store_read"):
            return self.store.find_request(request.actor_id, request.session_id, request.idempotency_key)

    def build_agent(self, state: TurnState) -> tuple[Agent, MemoryHooks]:
        """A fresh Agent per turn (Strands Agents must not be shared by concurrent calls), and its memory hooks.

        Its tools are bound to the turn's (actor, session), never to ids the model could supply:
        the session tools, and with long-term memory ``search_memory`` over the actor's records.
        Hook order matters: Strands runs ``BeforeInvocationEvent`` callbacks in registration
        order, so the window is loaded before long-term memory recalls (and leaves its turns out).
        """
        s = self.settings
        hooks = MemoryHooks(self.store, state, s.memory_k, max_tokens=s.memory_max_tokens, rolling=s.rolling_summary)
        tools = SessionTools(self.store, state, self.parts.summarizer, self.ltm).tools
        providers: list[Any] = [hooks]
        if self.ltm is not None:
            providers.append(LongTermHooks(self.ltm, state, top_k=s.ltm_top_k, min_score=s.ltm_min_score,
                                           max_tokens=s.ltm_max_tokens))
            tools += LongTermTools(self.ltm, state.actor_id, s.ltm_top_k).tools
        providers.append(ModelTimer())
        # retry_strategy=None: Strands' default backs a throttled call off for ~2 minutes (4+8+...+64 s) while
        # the request and its session lock wait; fail fast with a 503 instead (the model client's own retries,
        # botocore's for Bedrock, still apply) and let the caller retry
        agent = Agent(model=self.parts.model, system_prompt=SYSTEM_PROMPT, tools=tools, hooks=providers,
                      callback_handler=None, retry_strategy=None)
        return agent, hooks

    async def call_model(self, agent: Agent, hooks: MemoryHooks, deltas: EventSink | None) -> str | None:
        """Run the agent (its hooks load, recall and store); the reply as stored, None if it ended without one.

        Streamed (``deltas``), each text delta goes there as the model writes it, and the turn's
        ``cancel`` stops the model at its next chunk. Model failures become 502/503 (``model_error``).
        """
        state = hooks.state
        try:
            if deltas is None:
                return reply_text(await agent.invoke_async(state.message))
            reply: str | None = None
            async for event in agent.stream_async(state.message, cancel_signal=state.cancel):
                text = event.get("data")
                if isinstance(text, str) and text:
                    deltas.put(text)
                elif isinstance(event.get("result"), AgentResult):
                    reply = reply_text(event["result"])
            return reply
        except MaxTokensReachedException:
            return self.keep_truncated_reply(agent, hooks)
        except AssistantError:
            raise
        except Exception as e:  # the model (or its client) failed; the store was not written
            raise model_error(e) from e

    def keep_truncated_reply(self, agent: Agent, hooks: MemoryHooks) -> str:
        """The model hit ``MAX_TOKENS``: return and store the partial reply, since it is what the user gets.

        Strands raises ``MaxTokensReachedException`` with the partial reply left in the agent's
        messages and no result, so the memory hooks stored nothing; it is stored here.
        """
        last = agent.messages[-1] if agent.messages else None
        reply = text_of(last).strip() if last is not None and last["role"] == "assistant" else ""
        if not reply:
            raise ModelError(f"the model reached MAX_TOKENS={self.settings.max_tokens} before writing any text")
        hooks.state.truncated = True
        hooks.store_exchange(reply, user_text=hooks.state.message)
        return reply

    @memory_step("longterm_record", lambda self: {"memory.records": 2}, backend=lambda self: self.ltm and self.ltm.name)
    def remember(self, state: TurnState) -> None:
        """Queue the exchange this turn stored for long-term memory, under the window's generation.

        Only an exchange this request stored goes: not a replay (stored before, recorded then), not a
        turn that stored nothing (refused with a 409, cleared by its own ``clear_session`` tool, a
        client gone before the end, a failure). Best effort after the acknowledged store: a failure is
        a warning, never the turn's error (the client would retry a turn that was stored).
        """
        if self.ltm is None or not state.stored or state.generation is None:
            return
        assert state.message_count is not None
        try:
            self.ltm.record_exchange(state.actor_id, state.session_id, state.message_count, state.message.strip(),
                                     state.reply, time.time(), state.generation, state.epoch)
        except Exception as e:
            logger.warning("%s | turn %d not recorded in long-term memory: %s: %s", state.ids(), state.message_count,
                           type(e).__name__, e)

    def replayed(self, request: ChatRequest, stored: StoredReply) -> dict[str, Any]:
        """The stored turn's answer again: nothing was loaded or recalled for it (``memories_used`` 0)."""
        body = replay_body(request.session_id, request.actor_id, stored, request.explain)
        if self.ltm is not None:
            body["memories_used"] = 0
        return body

    def turn_body(self, request: ChatRequest, state: TurnState, reply: str | None) -> dict[str, Any]:
        """A turn's answer (``reply`` None: the stream's final event, the text went as deltas).

        When another request stored this idempotency key first (a concurrent retry, on any replica),
        the answer is that stored turn, ``replayed``, not this run's reply. With long-term memory
        on, ``memories_used`` counts the records recalled (quoted in the memory block ahead of the message).
        """
        if state.replayed is not None:
            return self.replayed(request, state.replayed)
        body: dict[str, Any] = {} if reply is None else {"response": reply}
        body.update(session_id=request.session_id, actor_id=request.actor_id,
                    message_count=state.message_count or 0, history_length=state.history_length)
        if self.ltm is not None:
            body["memories_used"] = state.memories_used
        if state.truncated:
            body["truncated"] = True  # the reply stopped at MAX_TOKENS
        if request.explain:
            body["memory"] = memory_report(state.loaded_turns, state.summary if state.summary_in_prompt else None,
                                           state.injected if self.ltm is not None else None)
        return body
