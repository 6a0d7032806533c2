"""Row codecs: messages to and from the columns the SQL functions take and return.

PostgreSQL ``text`` cannot hold NUL, which a JSON request may carry (``\\u0000``). A body holding one is
stored as ``\\x01`` + its JSON string; every body starting with ``\\x01`` is encoded so, so decoding is exact
whatever the text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from bedrock_agentcore.memory.constants import ConversationalMessage

from memory.base import (
    HistoryTurn, StoredEvent, StoredReply, Summary, Window, history_turn, message_from_fields, reply_of,
)
from memory.messages import turns_by_number

_ESCAPED = "\x01"


def encode_body(text: str) -> str:
    if "\x00" in text or text.startswith(_ESCAPED):
        return _ESCAPED + json.dumps(text)
    return text


def decode_body(stored: str) -> str:
    if stored.startswith(_ESCAPED):
        try:
            decoded = json.loads(stored[1:])
            if isinstance(decoded, str):
                return decoded
        except ValueError:
            pass  # written by hand, not by encode_body: shown as stored
    return stored


def encode_messages(messages: Sequence[ConversationalMessage]) -> tuple[list[str], list[str]]:
    """The two arrays ``memory_add_turns`` takes: roles and bodies, in order."""
    return [m.role.value for m in messages], [encode_body(m.text) for m in messages]


def decode_message(role: object, body: object) -> ConversationalMessage | None:
    return message_from_fields(role, decode_body(body) if isinstance(body, str) else body)


def stored_reply(rows: Sequence[tuple]) -> StoredReply:
    """``memory_add_turns``' 'duplicate' rows (outcome, message_count, role, body) as the original turn's reply."""
    messages = [decode_message(role, body) for _, _, role, body in rows if role is not None]
    return StoredReply(rows[0][1], reply_of([m for m in messages if m is not None]))


def window_from_rows(rows: Sequence[tuple]) -> Window:
    """``memory_load_window``'s rows: the header (turn -1), then the messages of the window, oldest first."""
    if not rows or rows[0][0] != -1:
        return Window([], 0, 0, summary_read=True)
    _, _, summary_text, generation, live, count, summary_through = rows[0]
    summary = Summary(decode_body(summary_text), summary_through) if live and summary_text is not None else None
    turns = turns_by_number((turn, decode_message(role, body)) for turn, role, body, *_ in rows[1:])
    return Window(turns, generation, count if live else 0, summary, summary_read=True)


def events_from_rows(rows: Iterable[tuple]) -> list[StoredEvent]:
    """(event_no, created_at, role, body) rows, oldest first, grouped into events."""
    events: list[StoredEvent] = []
    for event_no, created_at, role, body in rows:
        if not events or events[-1].event_id != str(event_no):
            events.append(StoredEvent(str(event_no), [], created_at))
        message = decode_message(role, body)
        if message is not None:
            events[-1].messages.append(message)
    return events


def history_from_rows(rows: Iterable[tuple], lead: int) -> list[HistoryTurn]:
    """(turn, role, body, created_at) rows, oldest first, as history turns (numbered ``turn - lead``)."""
    grouped: dict[int, tuple[list[ConversationalMessage], float]] = {}
    for turn, role, body, created_at in rows:
        messages, _ = grouped.setdefault(turn, ([], created_at))
        message = decode_message(role, body)
        if message is not None:
            messages.append(message)
    return [history_turn(turn - lead, messages, created_at) for turn, (messages, created_at) in grouped.items()]
