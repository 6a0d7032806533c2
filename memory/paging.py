"""The pages of ``list_sessions`` and ``get_history``, built the same way by every backend."""

from __future__ import annotations

from collections.abc import Sequence

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from memory.cursor import encode_cursor
from memory.messages import reply_of
from memory.values import FIRST_MESSAGE_CHARS, HistoryPage, HistoryTurn, SessionInfo, SessionPage


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
