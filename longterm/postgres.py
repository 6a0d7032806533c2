"""Long-term memory on PostgreSQL (``create_postgres_long_term``): the local store's retrieval, hybrid BM25F +
MiniLM (``longterm.local``, ``longterm.scoring``, the same ``Embedder``), over records every replica shares
(``longterm.postgres_store``). A record's text is stored on the request path, its vector added by a background
thread (any replica's: the work list is the database). A fact told on one replica is found from every other; a
``forget`` on one leaves nothing on any of them, not even a vector another replica was about to add."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import ConfigError
from longterm.embedding import Embedder
from longterm.local import LocalLongTermMemory
from longterm.postgres_store import PostgresLongTermStore
from longterm.scoring import DEFAULT_WEIGHTS, Weights

if TYPE_CHECKING:
    from core.settings import Settings
    from longterm.base import LongTermMemory

__all__ = ["PostgresLongTermMemory", "create_postgres_long_term"]


class PostgresLongTermMemory(LocalLongTermMemory):
    """``LocalLongTermMemory``'s search, write path and background writer over a ``PostgresLongTermStore``."""

    def __init__(self, store: PostgresLongTermStore, embedder: Embedder, weights: Weights = DEFAULT_WEIGHTS) -> None:
        super().__init__(store, embedder, weights)  # type: ignore[arg-type] - the same interface as SQLite's
        self.name = "postgres"

    def describe(self) -> str:
        return (f"kept in PostgreSQL ({self.store.where}), shared by every replica, text stored with the turn, "
                "vectors added by a background thread, searched by BM25 + MiniLM")


def create_postgres_long_term(settings: Settings) -> LongTermMemory:
    """Long-term memory on ``DATABASE_URL``; ``ConfigError`` (one start-up line) when it cannot be built."""
    from longterm.embedding import EmbeddingModelMissing
    from memory.postgres.connection import parse_database_url

    parse_database_url(settings.database_url, needed_by="LTM_BACKEND=postgres")
    try:
        embedder = Embedder()
    except EmbeddingModelMissing as e:
        raise ConfigError(f"LONG_TERM_MEMORY needs its embedding model ({e}); or set LONG_TERM_MEMORY=off") from e
    store = PostgresLongTermStore(settings.database_url, pool_size=max(2, settings.database_pool_size // 2),
                                  pool_timeout=settings.database_pool_timeout_s)
    return PostgresLongTermMemory(store, embedder)
