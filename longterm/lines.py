"""How a recalled long-term record reads for the model: one quoted item (``core.quoting``), never free text.

One format for both ways a record reaches the model: the memory block ahead of the user's new
message (``hooks/longterm.py``, placed by ``hooks/framing.py``) and the ``search_memory`` tool's
result (``tools/longterm.py``).
"""

from __future__ import annotations

from core.quoting import record_item
from longterm.base import Memory


def line(memory: Memory) -> str:
    """``{"said_by": "the user", "date": "2026-05-08", "session": "trip", "quote": "I am planning a trip"}``.

    One line whatever the record holds: its line breaks, ``<`` and ``>`` are escaped.
    """
    return record_item(memory.role, memory.created_at, memory.session_id or None, memory.text)
