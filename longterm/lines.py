"""How a recalled long-term record reads: one line, with its date and session, for the model.

One format for both ways a record reaches the model: the recall hook's system-prompt section
(``hooks/longterm.py``) and the ``search_memory`` tool's result (``tools/longterm.py``).
"""

from __future__ import annotations

from longterm.base import Memory
from longterm.text import iso_time


def line(memory: Memory) -> str:
    """``- [2026-05-08, session trip] user: I am planning a trip to Oslo in May``."""
    where = f"session {memory.session_id}" if memory.session_id else "long-term record"
    return f"- [{iso_time(memory.created_at)[:10]}, {where}] {memory.role}: {memory.text}"
