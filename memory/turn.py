"""The state of one turn: created by the turn pipeline per request, handed to the hooks, tools and streaming code.

Why it lives here, in ``memory/``: the service creates it, the hooks (``MemoryHooks``,
``LongTermHooks``) and the tools (``SessionTools``) read and write it, and imports flow
``service -> hooks/tools -> memory``. In ``hooks/`` the tools would have to import the
hooks; in ``service/`` neither could import it. Here, beside the store's value types it
holds (``Turn``, ``Summary``, ``StoredReply``), all three import it and nothing imports upward.

Who writes what (everything else only reads):

- the pipeline: the request's fields (at creation) and ``cancel`` / ``skip_store`` when the
  client leaves (``abandon``);
- ``MemoryHooks``: the window (``generation``, ``loaded_count``, ``window``, ``history_length``,
  ``dropped_for_budget``, ``summary``) before the model, ``message_count`` / ``replayed`` after;
- ``LongTermHooks``: ``epoch``, ``memories_used``, ``injected``, ``recalled``;
- ``SessionTools.clear``: ``skip_store`` (the exchange that cleared the session is not stored back).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from bedrock_agentcore.memory.constants import MessageRole

from memory.base import StoredReply, Summary, Turn


@dataclass(eq=False)
class TurnState:
    """One turn of one (actor, session), from its window to its stored exchange. Not shared between turns."""

    actor_id: str
    session_id: str
    #: the user's message as the request gave it ("" for an action, which has none)
    message: str = ""
    #: recorded with the stored exchange, so a retry of this request stores nothing new
    idempotency_key: str | None = None

    # -- the window, set by MemoryHooks before the model answers ------------------------------------------
    #: the session's generation when the window was loaded: every write of the turn is conditional on it
    generation: int | None = None
    #: the session's USER message count when the window was loaded (the number of its newest turn)
    loaded_count: int = 0
    #: the stored turns loaded (oldest first); the newest ``history_length`` of those kept went to the model
    window: list[Turn] = field(default_factory=list)
    #: turns put in front of the new message
    history_length: int = 0
    #: turns of the loaded window left out because they did not fit ``MEMORY_MAX_TOKENS``
    dropped_for_budget: int = 0
    #: the rolling summary read before the turn (None: none stored, or not read: see ``summary_read``)
    summary: Summary | None = None
    #: whether ``summary`` was read (only a full or budget-cut window reads it)
    summary_read: bool = False
    #: whether ``summary`` went to the model (quoted in the memory block ahead of the new message, never the
    #: system prompt: ``hooks/framing.py``)
    summary_in_prompt: bool = False
    #: the user text the hooks saw in the agent's input (the user's own words, never the memory block)
    user_text: str = ""
    #: the reply as stored (or the stored reply of a replay)
    reply: str = ""

    # -- the stored exchange, set by MemoryHooks after the model answered ---------------------------------
    #: the session's USER message count after this turn was stored (None: nothing stored)
    message_count: int | None = None
    #: set when another request had already stored this idempotency key: what it stored (nothing new was)
    replayed: StoredReply | None = None
    #: store none of this exchange (a clear_session tool ran in it, or the client left)
    skip_store: bool = False
    #: the reply was cut at MAX_TOKENS
    truncated: bool = False

    # -- long-term recall, set by LongTermHooks ----------------------------------------------------------
    #: the actor's long-term epoch when the turn started (None: not read)
    epoch: int | None = None
    #: records quoted in the memory block (the response's ``memories_used``)
    memories_used: int = 0
    #: what was injected, for an ``explain`` report: record id, score, session, turn, role, text
    injected: list[dict[str, Any]] = field(default_factory=list)
    #: for the recall's trace: records the search returned, the tokens injected, why nothing was (if so)
    recall_considered: int = 0
    recall_tokens: int = 0
    recall_skipped: str | None = None
    #: the injected records' text, kept only when content capture is on (``core.telemetry.capture_content``)
    recall_texts: list[str] = field(default_factory=list)
    #: the same records as the model reads them: one quoted item each (``core.quoting``), in the memory block
    recalled: list[str] = field(default_factory=list)

    #: set when the client left: the model stops at its next chunk
    cancel: threading.Event = field(default_factory=threading.Event)

    def ids(self) -> str:
        return f"actor_id=<{self.actor_id}> | session_id=<{self.session_id}>"

    def abandon(self) -> None:
        """The client went away: store none of this turn and stop the model at its next chunk."""
        self.skip_store = True
        self.cancel.set()

    @property
    def stored(self) -> bool:
        """Whether this turn stored a new exchange (not a replay of an earlier request's)."""
        return self.message_count is not None and self.replayed is None

    @property
    def loaded_turns(self) -> list[int]:
        """The numbers of the stored turns given to the model, oldest first (``explain``; long-term recall skips them).

        The window's turns are the session's newest, so the last is turn ``loaded_count``; turns
        without both texts are not given, and of the rest the newest ``history_length`` are.
        """
        first = self.loaded_count - len(self.window) + 1
        given = [first + i for i, turn in enumerate(self.window) if has_exchange(turn)]
        return given[len(given) - self.history_length:] if self.history_length else []


def has_exchange(turn: Turn) -> bool:
    """Whether a stored turn can be given to the model: it has both a user and an assistant text."""
    return any(m.role == MessageRole.USER and m.text for m in turn) and \
        any(m.role == MessageRole.ASSISTANT and m.text for m in turn)
