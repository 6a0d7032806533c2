"""Shared by the long-term memory tests: one embedder per test run (loading the model takes ~1 s)."""

from __future__ import annotations

import functools
import time
from pathlib import Path

from longterm.embedding import Embedder
from longterm.local import LocalLongTermMemory
from longterm.sqlite_store import SQLiteLongTermStore


@functools.lru_cache(maxsize=1)
def embedder() -> Embedder:
    return Embedder()


def local_ltm(path: Path | None) -> LocalLongTermMemory:
    """A local long-term memory on ``path`` (None: in-process)."""
    return LocalLongTermMemory(SQLiteLongTermStore(path), embedder())


def say(ltm: LocalLongTermMemory, actor: str, session: str, turn: int, user: str, reply: str = "Noted.",
        generation: int = 0, epoch: int | None = None, at: float | None = None) -> None:
    ltm.record_exchange(actor, session, turn, user, reply, time.time() if at is None else at, generation, epoch)


def texts(memories: list) -> list[str]:
    return [m.text for m in memories]


def postgres_ltm(url: str) -> LocalLongTermMemory:
    """Long-term memory on PostgreSQL at ``url`` (a schema of its own; each call is another replica)."""
    from longterm.postgres import PostgresLongTermMemory
    from longterm.postgres_store import PostgresLongTermStore

    return PostgresLongTermMemory(PostgresLongTermStore(url), embedder())
