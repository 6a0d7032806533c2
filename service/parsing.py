"""Checked payload fields: each problem a ``BadRequest`` (HTTP 400) that names the field and says what it must be.

Every action's parser (``service/actions.py``) and the chat request's (``service/requests.py``)
reads its fields through these, so hostile input is refused the same way everywhere: a wrong
type, a lone surrogate (``"\\ud800"`` parses from JSON fine but is not text), an integer too
large to echo, a value nested where a scalar belongs. Nothing here trusts ``str()`` of what
the client sent: a message quotes at most a short, escaped piece of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import BadRequest
from longterm.actions import MAX_QUERY_CHARS, MAX_TOP_K

#: longest ``record_id`` taken: a record id is 32 hex digits locally, an AgentCore record id is shorter than this
MAX_RECORD_ID_CHARS = 256

#: largest ``before`` taken: JSON's largest safe integer (every store takes it; no session has that many turns)
MAX_TURN_NUMBER = 2**53 - 1


def check_text(field: str, value: str) -> None:
    """Refuse text that cannot be stored or sent as UTF-8: a lone surrogate (``"\\ud800"``) parses from JSON fine."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRequest(f"'{field}' holds a lone surrogate ({value[e.start]!r} at character {e.start}), which is "
                         "not text; send valid Unicode") from e


def int_field(payload: Mapping[str, object], name: str, lowest: int, highest: int, default: int | None,
              expected: str) -> int | None:
    """The payload's integer ``name`` (``default`` when absent or null), else ``BadRequest`` saying ``expected``.

    A bool is not an integer here, though Python counts it as one; a huge integer is named by its
    digits' count, not printed (``str()`` of a 5,000-digit int raises in Python 3.11).
    """
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be {expected}, got {type(value).__name__}")
    if not lowest <= value <= highest:
        shown = str(value) if -10**18 < value < 10**18 else ("a huge negative integer" if value < 0
                                                              else "a huge integer")
        raise BadRequest(f"'{name}' must be {expected}, got {shown}")
    return value


def bool_field(payload: Mapping[str, object], name: str) -> bool:
    """The payload's ``true`` / ``false`` ``name`` (false when absent)."""
    value = payload.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false, got {type(value).__name__}")
    return value


def page_size(payload: Mapping[str, object], sizes: tuple[int, int]) -> int:
    """``limit``: a page size from 1 to the largest of ``sizes`` (default, largest); the default when absent."""
    default, largest = sizes
    limit = int_field(payload, "limit", 1, largest, default, f"an integer from 1 to {largest}")
    assert limit is not None
    return limit


def cursor_field(payload: Mapping[str, object]) -> str | None:
    """A string or null: whether the string is a cursor this server issued, the store says (``InvalidCursor``)."""
    cursor = payload.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise BadRequest(f"'cursor' must be a string (a 'next_cursor' this server gave) or null, "
                         f"got {type(cursor).__name__}")
    if cursor is not None:
        check_text("cursor", cursor)
    return cursor


def record_id_field(payload: Mapping[str, object], action: str) -> str:
    """``record_id``: a non-empty string (a ``record_id`` this server listed), at most ``MAX_RECORD_ID_CHARS``."""
    record_id = payload.get("record_id")
    if record_id is None:
        raise BadRequest(f"{action} needs a 'record_id' string (from list_memories or an explain report)")
    if not isinstance(record_id, str):
        raise BadRequest(f"'record_id' must be a string, got {type(record_id).__name__}")
    check_text("record_id", record_id)
    if not record_id.strip():
        raise BadRequest("'record_id' must not be empty")
    if len(record_id) > MAX_RECORD_ID_CHARS:
        raise BadRequest(f"'record_id' is {len(record_id)} characters long; a record id is at most "
                         f"{MAX_RECORD_ID_CHARS}")
    return record_id


def before_field(payload: Mapping[str, object]) -> int | None:
    return int_field(payload, "before", 1, MAX_TURN_NUMBER, None, "a positive integer (a turn number) or null")


@dataclass(frozen=True)
class SearchRequest:
    """A checked ``search_memory``: a non-blank query (stripped) and how many records."""

    query: str
    top_k: int


def parse_search(payload: Mapping[str, object], default_top_k: int) -> SearchRequest:
    """The ``search_memory`` action's fields, checked: a non-blank ``query`` string, ``top_k`` 1..50."""
    query = payload.get("query")
    if query is None:
        raise BadRequest("search_memory needs a 'query' string")
    if not isinstance(query, str):
        raise BadRequest(f"'query' must be a string, not {type(query).__name__}")
    check_text("query", query)
    if not query.strip():
        raise BadRequest("'query' must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"'query' is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
    expected = f"an integer between 1 and {MAX_TOP_K}"
    if "top_k" in payload and payload["top_k"] is None:  # absent: the default; null is not a number
        raise BadRequest(f"'top_k' must be {expected}, got NoneType")
    top_k = int_field(payload, "top_k", 1, MAX_TOP_K, default_top_k, expected)
    assert top_k is not None
    return SearchRequest(query.strip(), top_k)
