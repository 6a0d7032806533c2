"""The JSON shapes of the read-only answers: session lists, history pages, the ``explain`` memory report.

Pure functions from the store's records to response bodies, so the shapes the dev UI codes
against live in one place (docs/http.md lists them). Times are ISO 8601 in UTC to the second
(``2026-11-28T22:51:03Z``). The report names turns by number; recalled records carry their text (as the model was
handed it), so the caller sees what was remembered, and it is always the caller's own actor's.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from memory.base import HistoryPage, SessionPage, StoredReply, Summary

#: the fields of one ``memory.long_term`` item of an ``explain`` report (the dev UI reads exactly these)
LONG_TERM_ITEM = ("record_id", "session_id", "turn", "score", "role", "text")


def iso_utc(epoch_seconds: float) -> str:
    """``2026-11-28T22:51:03Z``: what JavaScript's ``Date`` and ``datetime.fromisoformat`` both read."""
    return datetime.fromtimestamp(epoch_seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sessions_body(actor_id: str, page: SessionPage) -> dict[str, Any]:
    return {
        "action": "list_sessions",
        "actor_id": actor_id,
        "sessions": [
            {"session_id": s.session_id, "message_count": s.message_count, "last_activity": iso_utc(s.updated_at),
             "first_message": s.first_message}
            for s in page.sessions
        ],
        "next_cursor": page.next_cursor,
    }


def history_body(actor_id: str, session_id: str, message_count: int, page: HistoryPage,
                 summary: Summary | None) -> dict[str, Any]:
    return {
        "action": "get_history",
        "session_id": session_id,
        "actor_id": actor_id,
        "message_count": message_count,
        "turns": [
            {"turn": t.turn, "user": t.user, "assistant": t.assistant, "created_at": iso_utc(t.created_at)}
            for t in page.turns
        ],
        "next_before": page.next_before,
        "summary": {"text": summary.text, "through_turn": summary.through_turn} if summary is not None else None,
    }


def memory_report(turns: list[int], summary: Summary | None,
                  long_term: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What was put in front of the model: the turns loaded, the summary's extent, the long-term records injected.

    ``long_term``: ``{"record_id", "session_id", "turn", "score", "role", "text"}`` per record, best first
    (``LongTermHooks.injected``); empty when long-term memory is off or recalled nothing.
    """
    return {
        "window": {"turns": turns},
        "summary": {"through_turn": summary.through_turn} if summary is not None else None,
        "long_term": [{key: record[key] for key in LONG_TERM_ITEM} for record in long_term or []],
    }


def replay_body(session_id: str, actor_id: str, stored: StoredReply, explain: bool) -> dict[str, Any]:
    """The answer to a request whose idempotency key was stored already: the stored turn, ``replayed``.

    Nothing was loaded for it and no model was called, so ``history_length`` is 0 and the
    ``memory`` report (when asked) is empty.
    """
    body: dict[str, Any] = {
        "response": stored.reply,
        "session_id": session_id,
        "actor_id": actor_id,
        "message_count": stored.message_count,
        "history_length": 0,
        "replayed": True,
    }
    if explain:
        body["memory"] = memory_report([], None)
    return body
