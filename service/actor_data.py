"""The actor's own data, all of it: ``export`` (read, paged) and ``erase`` (delete), on every backend.

Both go through the contracts only - ``SessionStore.list_sessions`` / ``get_history`` /
``get_summary`` / ``delete_session`` and ``LongTermMemory.list_records`` / ``forget`` - so every
session backend and every long-term backend has them without code of its own (GDPR access,
portability and erasure).

``export`` walks two lists one after the other with one cursor: first the sessions (each whole:
its turns oldest first and its rolling summary), then the long-term records (newest first). The
cursor says which list and where in it (``s:<the store's cursor>``, ``m:<long-term memory's>``);
the inner cursor is checked by the store that issued it, so anything else is a 400.

``erase`` deletes every listed session (its turns, summary and idempotency keys go with it, and
its generation moves on: a turn in flight there is refused, 409), lists again until a pass finds
nothing new (a turn stored meanwhile in a new session is caught by the next pass), then
``forget``s the long-term records (which also refuses every record write already in flight).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from core.errors import InvalidCursor
from longterm.base import LongTermMemory, Memory
from longterm.text import iso_time
from memory.base import SessionInfo, SessionStore
from service.views import iso_utc

logger = logging.getLogger(__name__)

#: ``export``'s page size (sessions, or long-term records, per page): default and largest
EXPORT_PAGE = (20, 100)
#: turns read per ``get_history`` call while a session is exported whole
HISTORY_BATCH = 200
#: sessions read per ``list_sessions`` call while erasing
ERASE_BATCH = 100
#: listing passes ``erase`` makes at most (each after deleting what the one before found)
ERASE_PASSES = 5

SESSIONS_PART, MEMORIES_PART = "s:", "m:"
BAD_CURSOR = "'cursor' is not a cursor this server issued; leave it out to start the export from the beginning"


def record_json(memory: Memory) -> dict[str, Any]:
    """One long-term record as ``list_memories`` and ``export`` show it (no score: nothing was ranked)."""
    return {"record_id": memory.record_id, "text": memory.text, "role": memory.role,
            "session_id": memory.session_id, "turn": memory.turn, "created_at": iso_time(memory.created_at)}


def whole_session(store: SessionStore, actor_id: str, info: SessionInfo) -> dict[str, Any]:
    """One session with every turn it holds (oldest first) and its rolling summary."""
    batches, before = [], None
    while True:
        page = store.get_history(actor_id, info.session_id, HISTORY_BATCH, before)
        batches.append(page.turns)
        if page.next_before is None or not page.turns:
            break
        before = page.next_before
    turns = [t for batch in reversed(batches) for t in batch]
    summary = store.get_summary(actor_id, info.session_id)
    return {
        "session_id": info.session_id,
        "message_count": info.message_count,
        "last_activity": iso_utc(info.updated_at),
        "turns": [{"turn": t.turn, "user": t.user, "assistant": t.assistant, "created_at": iso_utc(t.created_at)}
                  for t in turns],
        "summary": {"text": summary.text, "through_turn": summary.through_turn} if summary is not None else None,
    }


def split_cursor(cursor: str | None) -> tuple[str, str | None]:
    """``(part, the store's cursor or None)`` of an ``export`` cursor; ``InvalidCursor`` for one we did not issue."""
    if cursor is None:
        return SESSIONS_PART, None
    part, inner = cursor[:2], cursor[2:]
    if (part == SESSIONS_PART and inner) or part == MEMORIES_PART:
        return part, inner or None
    raise InvalidCursor(BAD_CURSOR)


def issued(cursor: str | None, part: str) -> str | None:
    return None if cursor is None else part + cursor


def export_page(store: SessionStore, ltm: LongTermMemory | None, actor_id: str, limit: int,
                cursor: str | None) -> dict[str, Any]:
    """One page of everything stored for the actor: sessions first, then long-term records."""
    part, inner = split_cursor(cursor)
    sessions: list[dict[str, Any]] = []
    try:  # a store's own cursor is ours to name: the caller only ever saw the outer one
        if part == SESSIONS_PART:
            page = store.list_sessions(actor_id, limit, inner)
            sessions = [whole_session(store, actor_id, info) for info in page.sessions]
            if page.next_cursor is not None or ltm is None:
                return export_body(sessions, [], issued(page.next_cursor, SESSIONS_PART), ltm)
            if sessions:
                return export_body(sessions, [], MEMORIES_PART, ltm)  # the records follow on the next page
            inner = None  # no session at all: the records start on this page
        if ltm is None:  # a records cursor, on a server that keeps none
            raise InvalidCursor(BAD_CURSOR)
        records = ltm.list_records(actor_id, limit, inner)
    except InvalidCursor as e:
        raise InvalidCursor(BAD_CURSOR) from e
    return export_body(sessions, [record_json(m) for m in records.records],
                       issued(records.next_cursor, MEMORIES_PART), ltm)


def export_body(sessions: list[dict[str, Any]], memories: list[dict[str, Any]], next_cursor: str | None,
                ltm: LongTermMemory | None) -> dict[str, Any]:
    return {"action": "export", "sessions": sessions, "memories": memories, "next_cursor": next_cursor,
            "long_term": ltm is not None}


def listed_sessions(store: SessionStore, actor_id: str) -> Iterator[str]:
    """Every session id ``list_sessions`` shows for the actor, page after page."""
    cursor = None
    while True:
        page = store.list_sessions(actor_id, ERASE_BATCH, cursor)
        yield from (info.session_id for info in page.sessions)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def erase_actor(store: SessionStore, ltm: LongTermMemory | None, actor_id: str) -> dict[str, Any]:
    """Delete every session (turns, summary, idempotency keys) and every long-term record of the actor."""
    erased: set[str] = set()
    turns = 0
    for _ in range(ERASE_PASSES):
        # listed in full before deleting: a delete reorders (or unlists from) the list a cursor walks
        found = [s for s in listed_sessions(store, actor_id) if s not in erased]
        if not found:
            break
        for session_id in found:
            turns += store.delete_session(actor_id, session_id)
            erased.add(session_id)
    else:
        logger.warning("actor_id=<%s> | erase: sessions still listed after %d passes (turns arriving while it ran); "
                       "erase again", actor_id, ERASE_PASSES)
    memories = ltm.forget(actor_id) if ltm is not None else None
    logger.info("actor_id=<%s> | erased %d sessions (%d turns), %s long-term records", actor_id, len(erased), turns,
                "no" if memories is None else memories)
    return {"action": "erase", "deleted": {"sessions": len(erased), "turns": turns, "memories": memories}}
