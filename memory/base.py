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
  (so a turn slower than the TTL still finds what it loaded when it stores)
  until its write, which never cuts short another turn's hold; other reads
  (``get_last_k_turns`` included) do not extend it. Expired sessions read as empty and are not listed; the next
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
"""

from __future__ import annotations

import abc
import base64
import binascii
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.errors import InvalidCursor, StoreUnavailable

logger = logging.getLogger(__name__)

Turn = list[ConversationalMessage]

P = ParamSpec("P")
R = TypeVar("R")


def unavailable_on(store: str, errors: type[Exception] | tuple[type[Exception], ...],
                   describe: Callable[[Exception], str] = lambda e: f"{type(e).__name__}: {e}",
                   ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator: the driver's ``errors`` become ``StoreUnavailable(store, ...)``, which the entrypoint maps to 503."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except errors as e:
                raise StoreUnavailable(store, describe(e)) from e

        return wrapper

    return decorate


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


#: how long an idempotency key is remembered when ``SESSION_TTL`` is not set
DEFAULT_REQUEST_RETENTION = 24 * 3600
#: at least how long a deleted session's generation (its tombstone) is kept
GENERATION_RETENTION = 7 * 24 * 3600
#: ``SessionInfo.first_message`` is the session's first USER message clipped to this many characters
FIRST_MESSAGE_CHARS = 120
_CURSOR_VERSION = 1


def request_retention(ttl: int | None) -> int:
    """Seconds an idempotency key stays recorded: ``SESSION_TTL`` if set, else 24 h."""
    return ttl if ttl is not None else DEFAULT_REQUEST_RETENTION


def generation_retention(ttl: int | None) -> int:
    """Seconds a tombstone outlives its last write: longer than any turn or fold that could race it."""
    return max(ttl or 0, GENERATION_RETENTION)


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
    session_id: str
    message_count: int
    #: when the session was last written (epoch seconds)
    updated_at: float
    #: the session's first USER message, clipped to ``FIRST_MESSAGE_CHARS``; "" if unknown
    first_message: str


@dataclass(frozen=True)
class SessionPage:
    sessions: list[SessionInfo]
    #: pass it back for the next page; None on the last page
    next_cursor: str | None


@dataclass(frozen=True)
class HistoryTurn:
    turn: int
    user: str
    assistant: str
    #: when the turn's first message was written (epoch seconds)
    created_at: float


@dataclass(frozen=True)
class HistoryPage:
    turns: list[HistoryTurn]
    #: pass it as ``before`` for the next (older) page; None when there are no older turns
    next_before: int | None


def encode_cursor(updated_at: float, session_id: str) -> str:
    """An opaque ``list_sessions`` cursor: the position (last write, session id) of the last session given."""
    raw = json.dumps([_CURSOR_VERSION, updated_at, session_id], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position a cursor names; ``InvalidCursor`` (400) for anything ``encode_cursor`` did not make."""
    try:
        if not isinstance(cursor, str) or not cursor:
            raise ValueError("empty")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, updated_at, session_id = json.loads(raw)
        if version != _CURSOR_VERSION or not isinstance(session_id, str) or isinstance(updated_at, bool) \
                or not isinstance(updated_at, (int, float)):
            raise ValueError("not a cursor")
        return float(updated_at), session_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as e:
        raise InvalidCursor(f"cursor {str(cursor)[:64]!r} is not one this server issued; "
                            "start again without a cursor") from e


def after_cursor(updated_at: float, session_id: str, cursor: tuple[float, str] | None) -> bool:
    """Whether a session at this position comes after the cursor (newest write first, then session id descending)."""
    return cursor is None or (updated_at, session_id) < cursor


def page_sessions(candidates: Sequence[SessionInfo], limit: int) -> SessionPage:
    """The first ``limit`` of ``candidates`` (already in order, at least limit+1 of them when more exist)."""
    sessions = list(candidates[:limit])
    more = len(candidates) > limit and sessions
    return SessionPage(sessions, encode_cursor(sessions[-1].updated_at, sessions[-1].session_id) if more else None)


def clip_first_message(text: str | None) -> str:
    return (text or "")[:FIRST_MESSAGE_CHARS]


def reply_of(messages: Sequence[ConversationalMessage]) -> str:
    """The assistant text of a stored turn (its ASSISTANT messages, joined): what the client was answered."""
    return "\n".join(m.text for m in messages if m.role == MessageRole.ASSISTANT)


def history_turn(number: int, turn: Sequence[ConversationalMessage], created_at: float) -> HistoryTurn:
    return HistoryTurn(
        number,
        "\n".join(m.text for m in turn if m.role == MessageRole.USER),
        reply_of(turn),
        created_at,
    )


def history_page(turns: list[HistoryTurn], more: bool) -> HistoryPage:
    """``turns`` oldest first; ``more``: older turns exist before the first of them."""
    return HistoryPage(turns, turns[0].turn if more and turns else None)


def history_bounds(total_turns: int, lead: int, limit: int, before: int | None) -> tuple[int, int]:
    """1-based positions [lo, hi] (in a session's turn list) of the page; hi < lo when it is empty.

    ``lead`` is 1 when the session begins with a turn without a USER message (turn 0), else 0,
    so position p holds turn number p - lead.
    """
    hi = total_turns if before is None else min(total_turns, before - 1 + lead)
    return max(1, hi - limit + 1), hi


def message_to_dict(message: ConversationalMessage) -> dict[str, str]:
    return {"role": message.role.value, "text": message.text}


def message_from_dict(data: object) -> ConversationalMessage | None:
    """Rebuild a stored message; None (and a warning) for anything malformed or foreign."""
    try:
        role = MessageRole(data["role"])  # type: ignore[index]
        text = data["text"]  # type: ignore[index]
        if not isinstance(text, str):
            raise TypeError("text is not a string")
        return ConversationalMessage(text, role)
    except (KeyError, TypeError, ValueError) as e:
        logger.warning("skipping a stored message that is not a valid message: %s", e)
        return None


_ROLES = {role.value: role for role in MessageRole}


def message_from_fields(role: object, text: object) -> ConversationalMessage | None:
    """``message_from_dict`` without building a dict or an enum by value: every window read runs it per message."""
    found = _ROLES.get(role) if isinstance(role, str) else None
    if found is not None and isinstance(text, str):
        return ConversationalMessage(text, found)
    return message_from_dict({"role": role, "text": text})  # None, with the warning that says why


def group_turns(messages: Sequence[ConversationalMessage]) -> list[Turn]:
    """Group messages (oldest first) into turns: a new turn starts at each USER message."""
    turns: list[Turn] = []
    for message in messages:
        if message.role == MessageRole.USER or not turns:
            turns.append([])
        turns[-1].append(message)
    return turns


def count_user_messages(messages: Sequence[ConversationalMessage]) -> int:
    return sum(1 for m in messages if m.role == MessageRole.USER)


def check_messages(messages: Sequence[ConversationalMessage]) -> None:
    if not messages:
        raise ValueError("add_turns needs at least one message")
    for message in messages:
        if not isinstance(message, ConversationalMessage):
            raise TypeError(f"add_turns takes ConversationalMessage objects, not {type(message).__name__}")


def check_idempotency_key(key: str | None) -> None:
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError("an idempotency key must be a non-empty string")


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
