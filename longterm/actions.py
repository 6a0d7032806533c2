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

from core.errors import BadRequest
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
    top_k = payload.get("top_k", default_top_k)
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise BadRequest(f"'top_k' must be an integer between 1 and {MAX_TOP_K}")
    if not 1 <= top_k <= MAX_TOP_K:
        raise BadRequest(f"'top_k' must be between 1 and {MAX_TOP_K}, not {top_k}")
    return SearchRequest(query.strip(), top_k)


def search_action(ltm: LongTermMemory, actor_id: str, request: SearchRequest) -> dict[str, Any]:
    """The caller's records for the query, best first (every turn: the caller asked, nothing is excluded)."""
    return {"action": "search_memory",
            "memories": [m.to_json() for m in ltm.search(actor_id, request.query, request.top_k)]}


def forget_action(ltm: LongTermMemory, actor_id: str) -> dict[str, Any]:
    """Delete every long-term record of the caller; how many were removed."""
    return {"action": "forget", "deleted": ltm.forget(actor_id)}
