"""The opaque ``list_sessions`` cursor: the position (last write, session id) of the last session given.

A cursor comes back from the client, so decoding treats it as hostile input: whatever a client sends,
the answer is the cursor's position or ``InvalidCursor`` (a 400 naming 'cursor'), never another error.
"""

from __future__ import annotations

import base64
import json
import math

from core.errors import InvalidCursor

_CURSOR_VERSION = 1
#: far above any cursor ``encode_cursor`` makes (a float and a session id of at most a few hundred
#: characters), and small enough that decoding a forged one costs nothing
MAX_CURSOR_CHARS = 2048


def encode_cursor(updated_at: float, session_id: str) -> str:
    """An opaque ``list_sessions`` cursor: the position (last write, session id) of the last session given."""
    raw = json.dumps([_CURSOR_VERSION, updated_at, session_id], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position a cursor names; ``InvalidCursor`` (400) for anything ``encode_cursor`` did not make."""
    try:
        return _position(cursor)
    # ValueError covers bad base64, bad UTF-8, bad JSON and a lone surrogate (UnicodeEncodeError); the
    # others are what a forged number (OverflowError) or deep nesting (RecursionError) raise
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        raise InvalidCursor(f"'cursor' {str(cursor)[:64]!r} is not one this server issued; "
                            "start again without a cursor") from e


def _position(cursor: object) -> tuple[float, str]:
    if not isinstance(cursor, str) or not cursor:
        raise ValueError("empty")
    if len(cursor) > MAX_CURSOR_CHARS:
        raise ValueError("too long")
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    decoded = json.loads(raw)
    if not isinstance(decoded, list) or len(decoded) != 3:
        raise ValueError("not a cursor")
    version, updated_at, session_id = decoded
    if type(version) is not int or version != _CURSOR_VERSION:
        raise ValueError("not a cursor")
    if isinstance(updated_at, bool) or not isinstance(updated_at, (int, float)) or not isinstance(session_id, str):
        raise ValueError("not a cursor")
    position = float(updated_at)  # OverflowError for an integer no float holds
    if not math.isfinite(position):
        raise ValueError("not a finite time")
    session_id.encode()  # UnicodeEncodeError for a lone surrogate, which no store can key by
    return position, session_id
