"""Session tools: ``summarize_session`` and ``clear_session``, bound to one request's conversation.

The tools take no argument at all. Which conversation they act on is fixed when
the request's agent is built (``SessionTools(store, actor_id, session_id, ...)``),
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
from dataclasses import dataclass
from typing import Any

from strands import tool
from strands.types.tools import AgentTool

from hooks.memory import MemoryHooks
from longterm import LongTermMemory
from memory.base import SessionStore
from models.summarizer import Summarizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cleared:
    """What ``clear`` removed: the session's events, and its long-term records (None: long-term memory is off)."""

    events: int
    memories: int | None = None


class SessionTools:
    """The session operations of one (actor, session); build one per request."""

    def __init__(self, store: SessionStore, actor_id: str, session_id: str, summarizer: Summarizer,
                 hooks: MemoryHooks | None = None, ltm: LongTermMemory | None = None) -> None:
        self.store = store
        self.actor_id = actor_id
        self.session_id = session_id
        self.summarizer = summarizer
        #: the request's memory hooks, when the operations run inside an agent invocation
        self.hooks = hooks
        #: long-term memory (None: off): a clear deletes the session's records there too
        self.ltm = ltm

    def _ids(self) -> str:
        return f"actor_id=<{self.actor_id}> | session_id=<{self.session_id}>"

    # -- the operations (the payload actions call these directly) -------------------------------

    def summarize(self) -> str:
        """A summary of every stored turn of this conversation. Model errors propagate; nothing is stored."""
        return self.summarizer.summarize_session(self.store, self.actor_id, self.session_id)

    def clear(self) -> Cleared:
        """Delete this conversation (its rolling summary, and its long-term records); what was removed.

        Inside an agent invocation the exchange that asked for it is not stored
        afterwards either, so the conversation really starts over.
        """
        generation = self._generation() if self.ltm is not None else 0
        deleted = self.store.delete_session(self.actor_id, self.session_id)
        if self.hooks is not None:
            self.hooks.skip_store = True
        memories = None
        if self.ltm is not None:  # after the store's delete: a turn stored meanwhile is deleted with its records
            memories = self.ltm.delete_session(self.actor_id, self.session_id, generation=generation)
        logger.debug("%s | cleared the session: %d events, %s long-term records removed", self._ids(), deleted,
                     memories)  # the request line says it
        return Cleared(deleted, memories)

    def _generation(self) -> int:
        """The session's generation before the delete: the one its stored turns and in-flight records carry.

        Inside a turn it is the loaded window's (the turn holds the session, so it is current);
        for the payload action, read now (the action holds the session slot too).
        """
        if self.hooks is not None and self.hooks.generation is not None:
            return self.hooks.generation
        return self.store.load_window(self.actor_id, self.session_id, 1).generation

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
            logger.warning("%s | summarize_session failed: %s: %s", self._ids(), type(e).__name__, e)
            return {"status": "error", "content": [{"text": f"Could not summarise the conversation: {e}"}]}
        return {"status": "success", "content": [{"text": text}]}

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
