"""The values the session store contract speaks in (see ``memory.base``): plain frozen records, no behaviour.

Kept apart from the interface so a caller that only reads a window or a page (views, hooks) imports data,
not the store machinery.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bedrock_agentcore.memory.constants import ConversationalMessage

#: one turn: its messages in the order they were added, starting at a USER message (see ``memory.base``)
Turn = list[ConversationalMessage]

#: ``SessionInfo.first_message`` is the session's first USER message clipped to this many characters
FIRST_MESSAGE_CHARS = 120


@dataclass(frozen=True)
class Summary:
    """A running summary of turns 1..``through_turn``: those out of the window, and up to ``SUMMARY_BATCH``-1 in it."""

    text: str
    through_turn: int


@dataclass(frozen=True)
class StoredEvent:
    """One ``add_turns`` call as stored: an id, its messages and when it was written."""

    event_id: str
    messages: list[ConversationalMessage]
    timestamp: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Window:
    """What a turn loads before the model call: the newest turns, the generation to write under, the count."""

    turns: list[Turn]
    generation: int
    #: the session's USER-message count: the number of the newest turn (0 for an empty session)
    message_count: int
    #: the rolling summary, read with the window by a store that can at no cost (``summary_read`` True);
    #: otherwise the hooks ask ``get_summary`` when they need it
    summary: Summary | None = field(default=None, compare=False)
    summary_read: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class StoredReply:
    """A turn stored under an idempotency key: its number and the assistant text it stored."""

    message_count: int
    reply: str


@dataclass(frozen=True)
class SessionInfo:
    """One row of ``list_sessions``."""

    session_id: str
    message_count: int
    #: when the session was last written (epoch seconds)
    updated_at: float
    #: the session's first USER message, clipped to ``FIRST_MESSAGE_CHARS``; "" if unknown
    first_message: str


@dataclass(frozen=True)
class SessionPage:
    """One page of ``list_sessions``."""

    sessions: list[SessionInfo]
    #: pass it back for the next page; None on the last page
    next_cursor: str | None


@dataclass(frozen=True)
class HistoryTurn:
    """One turn of ``get_history``: its number and texts."""

    turn: int
    user: str
    assistant: str
    #: when the turn's first message was written (epoch seconds)
    created_at: float


@dataclass(frozen=True)
class HistoryPage:
    """One page of ``get_history``."""

    turns: list[HistoryTurn]
    #: pass it as ``before`` for the next (older) page; None when there are no older turns
    next_before: int | None
