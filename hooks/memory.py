"""Memory hooks: load the last k turns before the agent answers, store the new turn after.

The window is bounded twice: at most k turns (``MEMORY_K``) and, newest first, only the
whole turns whose estimated tokens fit ``MEMORY_MAX_TOKENS``; long replies push the
oldest turns of the window out early, and the rolling summary covers them.

With ``ROLLING_SUMMARY`` (on by default) the stored running summary of the
turns that fell out of the window is given to the model as a quoted item of the
memory block ahead of the new message (``hooks/framing.py``: never in the system
prompt, which is the operator's); ``hooks/summary.py`` moves it ahead after the reply.

The hooks keep nothing of their own: what they load and store goes into the
turn's ``TurnState`` (``memory/turn.py``), which the pipeline created and reads.

Only the new exchange (the user's message and the final assistant text) is
written back, as one event: replayed history is never stored twice, and tool
calls never reach the store, so the history replayed next time always
alternates user / assistant and has no ``toolUse`` without its result.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from strands.hooks import AfterInvocationEvent, BeforeInvocationEvent, HookProvider, HookRegistry
from strands.types.content import Messages

from core.errors import AlreadyStored
from core.telemetry import memory_step
from core.timing import timed
from hooks.framing import place, user_words
from memory.base import SessionStore, StoredReply, Turn
from memory.turn import TurnState, has_exchange
from models.base import estimate_tokens, reply_text

logger = logging.getLogger(__name__)


def turns_to_messages(turns: list[Turn]) -> tuple[Messages, int]:
    """Stored turns as Strands messages that Bedrock Converse accepts.

    Each kept turn becomes one user message and one assistant message, so the
    history starts with ``user``, alternates, and ends with ``assistant``
    (the new user message follows it). A turn without both a user and an
    assistant text (a foreign or damaged record) is left out, with a warning.
    Returns the messages and the number of turns kept.
    """
    messages: Messages = []
    kept = 0
    for turn in turns:
        user = "\n".join(m.text for m in turn if m.role == MessageRole.USER and m.text)
        assistant = "\n".join(m.text for m in turn if m.role == MessageRole.ASSISTANT and m.text)
        if not user or not assistant:
            logger.warning("skipping a stored turn without both a user and an assistant message")
            continue
        messages.append({"role": "user", "content": [{"text": user}]})
        messages.append({"role": "assistant", "content": [{"text": assistant}]})
        kept += 1
    return messages, kept


def turn_tokens(turn: Turn) -> int:
    """Estimated tokens of one stored turn as the model gets it (its user and assistant message)."""
    return sum(estimate_tokens(message.text) for message in turn)


def newest_within(turns: list[Turn], max_tokens: int | None) -> int:
    """How many of the newest ``turns`` fit ``max_tokens`` whole (all of them when there is no budget)."""
    if max_tokens is None:
        return len(turns)
    used = 0
    for kept, turn in enumerate(reversed(turns)):
        used += turn_tokens(turn)
        if used > max_tokens:
            return kept
    return len(turns)


class MemoryHooks(HookProvider):
    """Binds one Agent invocation to one turn (``state``: its actor and session) of a store. Build one per turn.

    ``rolling``: give the model the session's rolling summary, quoted in the memory block (``ROLLING_SUMMARY``).
    """

    def __init__(self, store: SessionStore, state: TurnState, k: int, *, max_tokens: int | None = None,
                 rolling: bool = False) -> None:
        self.store = store
        self.state = state
        self.k = k
        #: estimated tokens the window's turns may take (``MEMORY_MAX_TOKENS``); None: only k bounds it
        self.max_tokens = max_tokens
        self.rolling = rolling

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(BeforeInvocationEvent, self.load_window)
        registry.add_callback(AfterInvocationEvent, self.store_turn)

    @memory_step("load_window", lambda self: {
        "memory.turns_loaded": self.state.history_length, "memory.turns_dropped_for_budget":
        self.state.dropped_for_budget, "memory.summary_present": self.state.summary_in_prompt},
        backend=lambda self: self.store.name)
    def load_window(self, event: BeforeInvocationEvent) -> None:
        """Put the session's last k turns (those that fit ``max_tokens``) and its summary in front of the model."""
        started, state = time.perf_counter(), self.state
        state.user_text = user_words(event.messages)
        with timed("store_read"):
            window = self.store.load_window(state.actor_id, state.session_id, self.k)
        turns = state.window = window.turns
        state.generation, state.loaded_count = window.generation, window.message_count
        shown = newest_within(turns, self.max_tokens)
        state.dropped_for_budget = len(turns) - shown
        history, state.history_length = turns_to_messages(turns[len(turns) - shown:])
        event.agent.messages[0:0] = history
        if self.rolling and (len(turns) >= self.k or state.dropped_for_budget):
            # only a full (or budget-cut) window can have turns before it: shorter sessions never pay for this
            # read, and none where the store read the summary with the window (SQLite)
            if window.summary_read:
                state.summary = window.summary
            else:
                with timed("store_read"):
                    state.summary = self.store.get_summary(state.actor_id, state.session_id)
            state.summary_read = True
            if state.summary is not None:
                state.summary_in_prompt = True
                place(event, state)
        logger.debug("%s | loaded %d turns (%d left out for MEMORY_MAX_TOKENS) in %.2f ms", state.ids(),
                     state.history_length, state.dropped_for_budget, (time.perf_counter() - started) * 1e3)

    def store_turn(self, event: AfterInvocationEvent) -> None:
        """Store the new exchange (the user's message and the final reply), once, as one event."""
        if event.result is None:
            return  # the invocation failed: nothing to store, the session stays as it was
        reply = reply_text(event.result)
        if not self.state.skip_store and (not self.state.user_text or not reply):
            logger.warning("%s | nothing stored: empty user message or empty reply", self.state.ids())
            return
        self.store_exchange(reply)

    @memory_step("store_turn", lambda self: {"memory.message_count": self.state.message_count,
                                             "memory.replayed": self.state.replayed is not None},
                 backend=lambda self: self.store.name)
    def store_exchange(self, reply: str, user_text: str | None = None) -> int | None:
        """Store one exchange, whole or cut at ``MAX_TOKENS`` (it is what the user got); the message count.

        Conditional on the loaded generation (``SessionChanged`` if the session was cleared since,
        nothing stored). If the idempotency key was stored already, nothing is stored and
        ``state.replayed`` is set. None when this exchange is not to be stored (``skip_store``).
        """
        state = self.state
        if state.skip_store:
            logger.debug("%s | this exchange is not stored (skip_store)", state.ids())
            return None
        started = time.perf_counter()
        if user_text is not None:
            state.user_text = user_text
        state.reply = reply
        try:
            with timed("store_write"):
                state.message_count = self.store.add_turns(
                    state.actor_id, state.session_id,
                    [ConversationalMessage(state.user_text, MessageRole.USER),
                     ConversationalMessage(reply, MessageRole.ASSISTANT)],
                    generation=state.generation, idempotency_key=state.idempotency_key)
        except AlreadyStored as e:  # a concurrent retry of this request stored it first: answer with that
            state.replayed = StoredReply(e.message_count, e.reply)
            state.message_count = e.message_count
            logger.debug("%s | idempotency key already stored as turn %d; nothing stored", state.ids(),
                         e.message_count)
            return state.message_count
        logger.debug("%s | stored turn %d in %.2f ms", state.ids(), state.message_count,
                     (time.perf_counter() - started) * 1e3)
        return state.message_count
