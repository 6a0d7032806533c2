"""Long-term memory: what an actor said in earlier sessions, searchable from every later one.

The request path needs only this package's front door:

    ltm = create_long_term(settings, store.name)         # at start-up; None when off (one log line says why)
    ltm.epoch(actor_id)                                  # when a request starts (LongTermHooks reads it)
    ltm.search(actor_id, query, top_k, exclude)          # before the model call (LongTermHooks does it)
    ltm.record_exchange(actor_id, session_id, turn, user, reply, created_at, generation, epoch)  # after the store
    ltm.delete_session(actor_id, session_id, generation) # with clear_session
    ltm.forget(actor_id)                                 # the "forget" action
    ltm.close()                                          # at shutdown: drains the background writer

See ``docs/longterm.md`` for the design and the figures.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from core.errors import ConfigError, LongTermUnavailable
from longterm.actions import SearchRequest, forget_action, parse_search, search_action
from longterm.base import LongTermMemory, Memory, MessageRecord

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = ["LongTermMemory", "Memory", "MessageRecord", "SearchRequest", "create_long_term", "forget_action",
           "parse_search", "search_action"]

logger = logging.getLogger(__name__)

#: session backends whose long-term memory lives on this machine (the same place as their sessions)
LOCAL_BACKENDS = ("memory", "sqlite")


def create_long_term(settings: Settings, session_store_name: str) -> LongTermMemory | None:
    """The long-term memory for this backend, or None (off). Logs one line saying which and why.

    - ``memory``: in-process SQLite (gone at restart, like the sessions);
    - ``sqlite``: a SQLite file beside ``SESSION_DB`` (``sessions-longterm.db``);
    - ``agentcore``: the memory resource's own long-term records;
    - any other backend (``redis``, ``dynamodb``): off unless ``LONG_TERM_MEMORY=on``, since its sessions
      are shared by every replica while local records would live on one; with ``on``, a SQLite file
      beside ``SESSION_DB`` on this replica (a warning says so).
    """
    wanted = settings.long_term_memory
    backend = session_store_name
    if wanted is False:
        logger.info("long-term memory: off (LONG_TERM_MEMORY=off) | backend=<%s>", backend)
        return None
    if backend == "agentcore":
        from longterm.agentcore import AgentCoreLongTermMemory

        if not settings.memory_id:
            raise ConfigError("LONG_TERM_MEMORY with MEMORY_BACKEND=agentcore needs MEMORY_ID")
        ltm: LongTermMemory = AgentCoreLongTermMemory(settings.memory_id, settings.ltm_namespace,
                                                      region_name=settings.aws_region)
    elif backend == "postgres":  # (becomes a registry entry) records shared by every replica, like the sessions
        from longterm.postgres import create_postgres_long_term

        ltm = create_postgres_long_term(settings)
    elif backend in LOCAL_BACKENDS or wanted:
        if backend not in LOCAL_BACKENDS:
            logger.warning(
                "long-term memory: LONG_TERM_MEMORY=on with MEMORY_BACKEND=%s keeps records in SQLite on THIS "
                "replica (%s): other replicas neither see them nor delete them on forget", backend, settings.ltm_db)
        ltm = _local(settings, in_process=backend == "memory")
    else:
        logger.info(
            "long-term memory: off for MEMORY_BACKEND=%s (its sessions are shared by every replica, local records "
            "would not be; LONG_TERM_MEMORY=on keeps them in SQLite on this replica anyway)", backend)
        return None
    logger.info("long-term memory: on | backend=<%s> | %s | top_k=%d min_score=%.2f max_tokens=%d", backend,
                ltm.describe(), settings.ltm_top_k, settings.ltm_min_score, settings.ltm_max_tokens)
    return ltm


def _local(settings: Settings, *, in_process: bool) -> LongTermMemory:
    from longterm.embedding import Embedder, EmbeddingModelMissing
    from longterm.local import LocalLongTermMemory
    from longterm.sqlite_store import SQLiteLongTermStore

    try:
        embedder = Embedder()
    except EmbeddingModelMissing as e:
        raise ConfigError(f"LONG_TERM_MEMORY needs its embedding model ({e}); or set LONG_TERM_MEMORY=off") from e
    try:
        store = SQLiteLongTermStore(None if in_process else settings.ltm_db, synchronous=settings.sqlite_synchronous,
                                    busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    except LongTermUnavailable as e:
        raise ConfigError(f"SESSION_DB={str(settings.session_db)!r}: {e.message}") from e
    return LocalLongTermMemory(store, embedder)
