"""Session stores behind one contract (see ``memory.base``), chosen by ``MEMORY_BACKEND``.

Each backend is described once, in ``memory.registry``: this front door only reads its entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory.base import (
    HistoryPage, HistoryTurn, SessionInfo, SessionPage, SessionStore, StoredEvent, StoredReply, Summary, Turn, Window,
)
from memory.registry import SESSION_BACKENDS, SessionBackend, session_backend

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = [
    "HistoryPage", "HistoryTurn", "SESSION_BACKENDS", "SessionBackend", "SessionInfo", "SessionPage", "SessionStore",
    "StoredEvent", "StoredReply", "Summary", "Turn", "Window", "create_store", "describe_store", "probe_store",
    "session_backend",
]


def create_store(settings: Settings) -> SessionStore:
    """Build the configured backend. Drivers are imported here, so only the chosen one must be installed."""
    return session_backend(settings).factory(settings)


def describe_store(settings: Settings) -> str:
    """Where the configured backend keeps its sessions, for the start-up line (no password)."""
    return session_backend(settings).describe(settings)


def probe_store(store: SessionStore) -> None:
    """Start-up health probe: warns when a networked store does not answer (requests answer 503 until it does)."""
    entry = SESSION_BACKENDS.get(store.name)  # a store of no entry (a test's own) has nothing to probe
    if entry is not None and entry.probe is not None:
        entry.probe(store)
