"""The long-term payload actions, without the model: ``search_memory`` and ``forget``, and their limits.

``{"action": "search_memory", "query": "...", "top_k": 5}`` ->
``{"action": "search_memory", "memories": [{"text", "session_id", "turn", "role", "score", "created_at"}, ...]}``
for the caller's actor; ``{"action": "forget"}`` -> ``{"action": "forget", "deleted": n}``.
The actor is always the caller's, and the fields are checked, by the service (``service/parsing.py``).
"""

from __future__ import annotations

from typing import Any

from longterm.base import LongTermMemory

#: a search query longer than this is refused: it is a query, not a document
MAX_QUERY_CHARS = 2_000
MAX_TOP_K = 50


def search_action(ltm: LongTermMemory, actor_id: str, query: str, top_k: int) -> dict[str, Any]:
    """The caller's records for the query, best first (every turn: the caller asked, nothing is excluded)."""
    return {"action": "search_memory", "memories": [m.to_json() for m in ltm.search(actor_id, query, top_k)]}


def forget_action(ltm: LongTermMemory, actor_id: str) -> dict[str, Any]:
    """Delete every long-term record of the caller; how many were removed."""
    return {"action": "forget", "deleted": ltm.forget(actor_id)}
