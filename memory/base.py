"""The session store contract, shared by every backend.

It mirrors ``bedrock_agentcore.memory.session.MemorySession`` (``add_turns``,
``get_last_k_turns``, ``list_events``) so the AgentCore backend is a thin
adapter, and speaks the SDK's own ``ConversationalMessage`` / ``MessageRole``.

Definitions every backend honours (the contract suite in
``tests/test_store_contract.py`` checks each one):

- An *event* is what one ``add_turns`` call stored: its messages, whole, in order.
- A *turn* starts at each USER message; messages before the first USER message
  of a session form a turn of their own. A turn's *number* is the session's
  USER-message count once it was stored (turn n starts at the n-th USER
  message; a leading turn without a USER message is turn 0), so it is the
  ``message_count`` the client was given for it.
- ``get_last_k_turns`` returns the newest k turns, oldest first, each turn's
  messages in the order they were added. Its cost does not grow with the
  length of the session. ``load_window`` returns the same turns plus the
  session's generation and USER-message count, in one round trip where the
  backend allows it.
- ``add_turns`` is atomic (all of its messages or none) and returns the
  session's number of USER messages after the write: concurrent writers on one
  session get distinct, gap-free numbers.
- **Generations: a delete stays deleted.** Every (actor, session) has a
  generation, 0 until it is first deleted; ``delete_session`` bumps it, and the
  bump outlives the delete (a tombstone). ``add_turns(generation=G)`` stores
  nothing and raises ``SessionChanged`` when the session's generation is no
  longer G; ``put_summary(generation=G)`` returns False and writes nothing,
  also when the session no longer holds the turns the summary covers
  (``message_count < through_turn``: it expired). Both checks are atomic with
  the write, so a turn or a rolling summary begun before a clear (on any
  replica) never reaches the cleared conversation.
  (AgentCore Memory has no conditional write: its generations are per process,
  see ``memory.agentcore``.)
- **Idempotency.** ``add_turns(idempotency_key=K)`` records K with the turn,
  atomically, per (actor, session). While K is recorded (for ``SESSION_TTL``
  seconds if set, else 24 h) another ``add_turns`` with K stores nothing and
  raises ``AlreadyStored`` carrying the original turn's count and assistant
  text; ``find_request`` looks K up. Concurrent writers with one K store one turn.
- ``delete_session`` removes every event, the rolling summary and the
  idempotency records of that (actor, session) and nothing else, bumps its
  generation, and returns how many events it removed (0 for a session that
  had expired).
- ``put_summary`` never makes a session count or list: a session with only a
  summary has ``message_count`` 0 and is not in ``list_sessions``.
- ``SESSION_TTL`` (``memory.expiry``) is measured from the session's last write;
  a turn's ``load_window`` holds the session ``max(SESSION_TTL, turn grace)``
  (so a turn slower than the TTL still finds what it loaded when it stores);
  expiry only moves later, and other reads (``get_last_k_turns`` included) do
  not extend it. Expired sessions read as empty and are not listed; the next
  write starts them again at 1 under a new generation (a writer that loaded
  the old life gets ``SessionChanged``). Long-term records stay.
- ``list_sessions`` pages one actor's live sessions, newest write first, by an
  opaque cursor (``InvalidCursor`` for one this server did not issue); its cost
  does not grow with other actors' sessions. ``get_history`` pages one
  session's turns newest page first, turns oldest first within a page; its
  cost is proportional to the page, not the session (AgentCore: to the turns
  newer than the page).
- Sessions are keyed by the pair (actor_id, session_id), never by a string
  built from both, so no two pairs can meet.

This module holds the interface; the values it speaks in are in ``memory.values``, and what every
backend shares to honour it in ``memory.messages`` (stored messages, turns), ``memory.cursor`` and
``memory.paging`` (the pages), ``memory.retention`` and ``memory.unavailable``. Every name stays
importable from here, as before the split.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from bedrock_agentcore.memory.constants import ConversationalMessage

from memory.cursor import decode_cursor, encode_cursor
from memory.messages import (
    check_idempotency_key, check_messages, count_user_messages, group_turns, message_from_dict, message_from_fields,
    message_to_dict, reply_of,
)
from memory.paging import after_cursor, clip_first_message, history_bounds, history_page, history_turn, page_sessions
from memory.retention import (
    DEFAULT_REQUEST_RETENTION, GENERATION_RETENTION, generation_retention, request_retention,
)
from memory.unavailable import unavailable_on
from memory.values import (
    FIRST_MESSAGE_CHARS, HistoryPage, HistoryTurn, SessionInfo, SessionPage, StoredEvent, StoredReply, Summary, Turn,
    Window,
)

__all__ = [
    "DEFAULT_REQUEST_RETENTION", "FIRST_MESSAGE_CHARS", "GENERATION_RETENTION", "HistoryPage", "HistoryTurn",
    "SessionInfo", "SessionPage", "SessionStore", "StoredEvent", "StoredReply", "Summary", "Turn", "Window",
    "after_cursor", "check_idempotency_key", "check_messages", "clip_first_message", "count_user_messages",
    "decode_cursor", "encode_cursor", "generation_retention", "group_turns", "history_bounds", "history_page",
    "history_turn", "message_from_dict", "message_from_fields", "message_to_dict", "page_sessions", "reply_of",
    "request_retention", "unavailable_on",
]


class SessionStore(abc.ABC):
    """Where conversations live. One instance serves every actor and session of a process."""

    #: Short name used in logs and in 503 errors ("session store 'redis' is unavailable").
    name: str = "store"

    @abc.abstractmethod
    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage], *,
                  generation: int | None = None, idempotency_key: str | None = None) -> int:
        """Store ``messages`` as one event; return the session's USER message count after it.

        ``generation``: store only if the session's generation is still this one, else raise
        ``SessionChanged`` (nothing stored). ``idempotency_key``: record it with the turn; if it is
        already recorded for this session, store nothing and raise ``AlreadyStored``.
        """

    @abc.abstractmethod
    def load_window(self, actor_id: str, session_id: str, k: int) -> Window:
        """The newest ``k`` turns (oldest first), the generation and the USER message count.

        On a live session with a TTL it counts as activity: the session's expiry starts again.
        """

    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        """The newest ``k`` turns, oldest first (``MemorySession``'s name for it)."""
        return self.load_window(actor_id, session_id, k).turns

    @abc.abstractmethod
    def find_request(self, actor_id: str, session_id: str, key: str) -> StoredReply | None:
        """The turn stored under idempotency ``key`` in this session, while it is remembered."""

    @abc.abstractmethod
    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        """Every event of the session, oldest first."""

    @abc.abstractmethod
    def delete_session(self, actor_id: str, session_id: str) -> int:
        """Remove every event, the summary and the idempotency records; bump the generation; return events removed."""

    @abc.abstractmethod
    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        """The session's rolling summary, if one was stored."""

    @abc.abstractmethod
    def put_summary(self, actor_id: str, session_id: str, summary: Summary, *, generation: int | None = None) -> bool:
        """Replace the session's rolling summary; False (nothing written) if ``generation`` is no longer current."""

    @abc.abstractmethod
    def list_sessions(self, actor_id: str, limit: int, cursor: str | None = None) -> SessionPage:
        """One page of the actor's live sessions that hold turns, newest write first (1 <= limit <= 1000)."""

    @abc.abstractmethod
    def get_history(self, actor_id: str, session_id: str, limit: int, before: int | None = None) -> HistoryPage:
        """The ``limit`` newest turns numbered below ``before`` (all turns if None), oldest first."""

    def close(self) -> None:
        """Release what the store opened (connections, files). Idempotent."""
