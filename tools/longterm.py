"""The ``search_memory`` tool: the model searches the caller's long-term memory, and only the caller's.

Bound to one actor when the request's agent is built
(``LongTermTools(ltm, actor_id, default_top_k)``). The tool declares only
``query`` and ``top_k``: a forged ``{"actor_id": "bob"}`` in the tool input is
dropped by Strands (undeclared fields never reach the function), and nothing in
the query can name another actor, so a prompt cannot read anyone else's records.

Why not Strands' own ``MemoryManager`` tool: it adds a ``stores`` argument, its
result carries no session or date, and its plugin re-searches before every
model call of a turn (see ``docs/longterm.md``). The store it would call is the
same ``LongTermMemory.search``.
"""

from __future__ import annotations

import logging
from typing import Any

from strands import tool
from strands.types.tools import AgentTool

from core.quoting import SEARCH_PREAMBLE, fenced
from longterm.actions import MAX_QUERY_CHARS, MAX_TOP_K
from longterm.base import LongTermMemory
from longterm.lines import line

logger = logging.getLogger(__name__)


class LongTermTools:
    """The long-term memory tool of one actor; build one per request."""

    def __init__(self, ltm: LongTermMemory, actor_id: str, default_top_k: int = 5) -> None:
        self.ltm = ltm
        self.actor_id = actor_id
        self.default_top_k = default_top_k

    @tool
    def search_memory(self, query: str, top_k: int | None = None) -> dict[str, Any]:
        """Search what the user told you in earlier conversations (long-term memory).

        Use it when the user refers to something said before that is not in this conversation, or asks
        what you remember about them. It searches only the current user's own memory.

        Args:
            query: What to look for, in a few words (for example "allergies" or "trip to Oslo").
            top_k: How many records to return (1-50, default 5).
        """
        k = self.default_top_k if top_k is None else max(1, min(int(top_k), MAX_TOP_K))
        if not isinstance(query, str) or not query.strip():
            return {"status": "error", "content": [{"text": "search_memory needs a non-empty query."}]}
        try:
            found = self.ltm.search(self.actor_id, query.strip()[:MAX_QUERY_CHARS], k)
        except Exception as e:  # report it to the model; the turn goes on
            logger.warning("actor_id=<%s> | search_memory failed: %s: %s", self.actor_id, type(e).__name__, e)
            return {"status": "error", "content": [{"text": f"Long-term memory is unavailable: {e}"}]}
        if not found:
            return {"status": "success", "content": [{"text": "Nothing about that in long-term memory."}]}
        # quoted as the recalled memory block is: a record cannot pose as an instruction in a tool result either
        return {"status": "success", "content": [{"text": fenced([line(m) for m in found], preamble=SEARCH_PREAMBLE)}]}

    @property
    def tools(self) -> list[AgentTool]:
        return [self.search_memory]
