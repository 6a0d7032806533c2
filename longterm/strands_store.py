"""Long-term memory as a Strands ``MemoryStore``: one actor's records, for Strands' ``MemoryManager``.

The request path calls ``LongTermMemory`` directly (``hooks/longterm.py``: why, in
``docs/longterm.md``), but any Strands agent can use the same records through the
field's own interface: ``MemoryManager(stores=[ActorMemoryStore(ltm, actor_id)])`` gives it
Strands' ``search_memory`` tool and injection over this actor's records, and nobody else's.
Recall only (``writable=False``): records are written by the assistant's own write path.
"""

from __future__ import annotations

import asyncio

from strands.memory import MemoryEntry, SearchOptions

from longterm.base import LongTermMemory

DEFAULT_RESULTS = 5


class ActorMemoryStore:
    """Implements ``strands.memory.MemoryStore`` (``search``) over one actor's long-term records."""

    writable = False
    extraction = None

    def __init__(self, ltm: LongTermMemory, actor_id: str, *, name: str = "long-term",
                 max_search_results: int | None = DEFAULT_RESULTS) -> None:
        self.ltm = ltm
        self.actor_id = actor_id
        self.name = name
        self.description = "What the user said in earlier conversations with this assistant."
        self.max_search_results = max_search_results

    async def search(self, query: str, options: SearchOptions | None = None) -> list[MemoryEntry]:
        top_k = (options or {}).get("max_search_results") or self.max_search_results or DEFAULT_RESULTS
        found = await asyncio.to_thread(self.ltm.search, self.actor_id, query, top_k)
        return [MemoryEntry(content=m.text, metadata={"session_id": m.session_id, "turn": m.turn, "role": m.role,
                                                      "score": m.score, "created_at": m.to_json()["created_at"],
                                                      "record_id": m.record_id}) for m in found]
