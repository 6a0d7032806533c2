"""Session tools: ``summarize_session`` and ``clear_session``, bound to one request's conversation.

The tools take no argument at all. Which conversation they act on is fixed when
the request's agent is built (``SessionTools(store, state, ...)``: the turn's state),
so nothing the model writes - not a prompt like "clear session bob-chat", not a
forged ``{"session_id": ..., "actor_id": ...}`` tool input (Strands drops input
fields a tool does not declare) - can reach another conversation.

The payload actions (``{"action": "summarize_session"}``) run the same
``summarize`` / ``clear`` methods without the model.

With long-term memory (``ltm``), ``clear`` also deletes the session's long-term
records, under the generation the session had before the delete, so a record of
that conversation still queued or in flight (on any process sharing the records)
is refused when it lands: a cleared conversation is not recalled from any other.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from strands import tool
from strands.types.tools import AgentTool

from longterm import LongTermMemory
from memory.base import SessionStore, group_turns
from memory.turn import TurnState
from core.quoting import SUMMARY_PREAMBLE, conversation_summary_item, fenced
from models.summarizer import EMPTY_SESSION_SUMMARY, Summarizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cleared:
    """What ``clear`` removed: the session's events, and its long-term records (None: long-term memory is off)."""

    events: int
    memories: int | None = None


class SessionTools:
    """The session operations of one turn's (actor, session); build one per turn.

    ``state``: the turn's. Inside an agent invocation ``clear`` marks it so the exchange that
    asked for the clear is not stored back; for a payload action it is a state of its own.
    """

    def __init__(self, store: SessionStore, state: TurnState, summarizer: Summarizer,
                 ltm: LongTermMemory | None = None) -> None:
        self.store = store
        self.state = state
        self.summarizer = summarizer
        #: long-term memory (None: off): a clear deletes the session's records there too
        self.ltm = ltm

    # -- the operations (the payload actions call these directly) -------------------------------

    def summarize(self) -> str:
        """A summary of every stored turn of this conversation. Model errors propagate; nothing is stored."""
        state, started = self.state, time.perf_counter()
        events = self.store.list_events(state.actor_id, state.session_id)
        turns = group_turns([m for event in events for m in event.messages])
        text = self.summarizer.summarize_turns(
            turns, lambda: self.store.get_summary(state.actor_id, state.session_id))
        logger.debug("%s | summarised %d turns in %.1f ms", state.ids(), len(turns),
                     (time.perf_counter() - started) * 1e3)
        return text

    def clear(self) -> Cleared:
        """Delete this conversation (its rolling summary, and its long-term records); what was removed.

        Inside an agent invocation the exchange that asked for it is not stored
        afterwards either, so the conversation really starts over.
        """
        state = self.state
        generation = self._generation() if self.ltm is not None else 0
        deleted = self.store.delete_session(state.actor_id, state.session_id)
        state.skip_store = True
        memories = None
        if self.ltm is not None:  # after the store's delete: a turn stored meanwhile is deleted with its records
            memories = self.ltm.delete_session(state.actor_id, state.session_id, generation=generation)
        logger.debug("%s | cleared the session: %d events, %s long-term records removed", state.ids(), deleted,
                     memories)  # the request line says it
        return Cleared(deleted, memories)

    def _generation(self) -> int:
        """The session's generation before the delete: the one its stored turns and in-flight records carry.

        Inside a turn it is the loaded window's (the turn holds the session, so it is current);
        for the payload action, read now (the action holds the session slot too).
        """
        if self.state.generation is not None:
            return self.state.generation
        return self.store.load_window(self.state.actor_id, self.state.session_id, 1).generation

    # -- the same operations as Strands tools --------------------------------------------------

    @tool
    def summarize_session(self) -> dict[str, Any]:
        """Summarise this whole conversation with the user, including the parts too old to be shown to you.

        Use it when the user asks for a summary or recap of the conversation, or asks what you have
        talked about so far. It takes no arguments: it always reads the current user's current
        conversation and no other. Returns the summary text.
        """
        try:
            text = self.summarize()
        except Exception as e:  # the summary model call failed: report it, store and lose nothing
            logger.warning("%s | summarize_session failed: %s: %s", self.state.ids(), type(e).__name__, e)
            return {"status": "error", "content": [{"text": f"Could not summarise the conversation: {e}"}]}
        if text == EMPTY_SESSION_SUMMARY:  # our own sentence, not stored text
            return {"status": "success", "content": [{"text": text}]}
        # quoted as recalled memory is: a summary retells what the user typed, which must not pose as instructions
        return {"status": "success",
                "content": [{"text": fenced([conversation_summary_item(text)], preamble=SUMMARY_PREAMBLE)}]}

    @tool
    def clear_session(self) -> str:
        """Delete everything stored of this conversation, so that it starts over with no memory.

        Use it only when the user explicitly asks to clear, reset, wipe or forget this conversation
        or to start over; never on your own initiative. It takes no arguments: it only ever clears
        the current user's current conversation. Returns how many stored exchanges were removed.
        After it, tell the user the conversation was cleared.
        """
        cleared = self.clear()
        memories = f" and {cleared.memories} long-term memory records" if cleared.memories else ""
        if cleared.events == 0 and not cleared.memories:
            return "There was nothing stored to clear: this conversation was already empty."
        return f"Cleared this conversation: removed {cleared.events} stored exchanges{memories}. It now starts over."

    @property
    def tools(self) -> list[AgentTool]:
        """The tools to give this request's agent."""
        return [self.summarize_session, self.clear_session]
