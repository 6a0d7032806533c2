"""Session stores behind one contract (see ``memory.base``), chosen by ``MEMORY_BACKEND``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory.base import SessionStore, StoredEvent, Summary, Turn

if TYPE_CHECKING:
    from config import Settings

__all__ = ["SessionStore", "StoredEvent", "Summary", "Turn", "create_store"]


def create_store(settings: Settings) -> SessionStore:
    """Build the configured backend. Drivers are imported here, so only the chosen one must be installed."""
    backend = settings.memory_backend
    if backend == "memory":
        from memory.in_memory import InMemoryStore

        return InMemoryStore(ttl=settings.session_ttl)
    if backend == "sqlite":
        from memory.sqlite import SQLiteStore

        return SQLiteStore(settings.session_db, ttl=settings.session_ttl, synchronous=settings.sqlite_synchronous)
    raise NotImplementedError(f"MEMORY_BACKEND={backend!r} is not available in this build")
