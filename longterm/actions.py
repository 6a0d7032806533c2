"""The long-term payload actions, without the model: ``search_memory`` and ``forget``.

``{"action": "search_memory", "query": "...", "top_k": 5}`` ->
``{"action": "search_memory", "memories": [{"text", "session_id", "turn", "role", "score", "created_at"}, ...]}``
for the caller's actor; ``{"action": "forget"}`` -> ``{"action": "forget", "deleted": n}``.
The actor is always the caller's (resolved by the service, never read from here).
Bad input is a ``BadRequest`` (HTTP 400) saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import BadRequest, int_field
from longterm.base import LongTermMemory

#: a search query longer than this is refused: it is a query, not a document
MAX_QUERY_CHARS = 2_000
MAX_TOP_K = 50


@dataclass(frozen=True)
class SearchRequest:
    query: str
    top_k: int


def parse_search(payload: Mapping[str, Any], default_top_k: int) -> SearchRequest:
    """The ``search_memory`` action's fields, checked: a non-blank ``query`` string, ``top_k`` 1..50."""
    query = payload.get("query")
    if query is None:
        raise BadRequest("search_memory needs a 'query' string")
    if not isinstance(query, str):
        raise BadRequest(f"'query' must be a string, not {type(query).__name__}")
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


def search_action(ltm: LongTermMemory, actor_id: str, request: SearchRequest) -> dict[str, Any]:
    """The caller's records for the query, best first (every turn: the caller asked, nothing is excluded)."""
    return {"action": "search_memory",
            "memories": [m.to_json() for m in ltm.search(actor_id, request.query, request.top_k)]}


def forget_action(ltm: LongTermMemory, actor_id: str) -> dict[str, Any]:
    """Delete every long-term record of the caller; how many were removed."""
    return {"action": "forget", "deleted": ltm.forget(actor_id)}
