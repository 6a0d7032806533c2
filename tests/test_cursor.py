"""The ``list_sessions`` cursor codec (``memory.cursor``): what it issues round-trips, anything else is a 400.

Over HTTP, on every backend: ``test_bad_paging_or_explain_is_a_400_naming_the_field_and_changes_nothing``
in ``tests/test_history_actions.py``.
"""

from __future__ import annotations

import base64

import pytest

from core.errors import InvalidCursor
from memory.base import decode_cursor as decode_cursor_from_base
from memory.cursor import MAX_CURSOR_CHARS, decode_cursor, encode_cursor


def forged(raw_json: str) -> str:
    return base64.urlsafe_b64encode(raw_json.encode()).decode().rstrip("=")


@pytest.mark.parametrize(("updated_at", "session_id"), [
    (1765000000.123456, "s1"), (0.0, "a"), (1765000000, "x" * 100), (1.5, "ünïcödé-is-kept"),
])
def test_a_cursor_it_issued_decodes_to_its_position(updated_at: float, session_id: str) -> None:
    assert decode_cursor(encode_cursor(updated_at, session_id)) == (float(updated_at), session_id)


@pytest.mark.parametrize("cursor", [
    forged("[1," + "9" * 400 + ',"s1"]'),                       # no float holds it: OverflowError before
    forged("[1," + "[" * 1400 + ',"s1"]'),                      # nesting past the recursion limit: RecursionError
    forged("[1," + "[" * 2000 + "]" * 2000 + ',"s1"]'),         # the same, longer than any cursor we issue
    forged('[1,1.5,"\\ud800"]'),                                # a lone surrogate: UnicodeEncodeError in the store
    "\ud800",                                                   # the same, in the cursor itself
    forged('[1,NaN,"s1"]'), forged('[1,Infinity,"s1"]'),        # not a time a session was written
    forged('[1,1.5,"s1",4]'), forged('[1,1.5]'), forged('{"a":1}'), forged('"s1"'), forged("null"),
    forged('[true,1.5,"s1"]'), forged('[1.0,1.5,"s1"]'), forged('[2,1.5,"s1"]'),
    forged('[1,true,"s1"]'), forged('[1,"1.5","s1"]'), forged("[1,1.5,7]"),
    forged("[1,1.5,"), "", "!!!", "nope", "A" * (MAX_CURSOR_CHARS + 1),
])
def test_every_malformed_cursor_is_an_invalid_cursor_naming_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as info:
        decode_cursor(cursor)
    assert info.value.status == 400 and "'cursor'" in info.value.message
    info.value.message.encode()  # the 400's text survives being sent as JSON/UTF-8


@pytest.mark.parametrize("cursor", [None, 7, b"WzEsMS41LCJzMSJd", ["x"]])
def test_a_cursor_that_is_not_a_string_is_an_invalid_cursor(cursor: object) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)  # type: ignore[arg-type]


def test_memory_base_still_exports_the_codec() -> None:
    assert decode_cursor_from_base is decode_cursor
