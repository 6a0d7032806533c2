"""Session stores behind one contract (see ``memory.base``), chosen by ``MEMORY_BACKEND``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from core.errors import ConfigError, StoreUnavailable
from memory.base import (
    HistoryPage, HistoryTurn, SessionInfo, SessionPage, SessionStore, StoredEvent, StoredReply, Summary, Turn, Window,
)

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = [
    "HistoryPage", "HistoryTurn", "SessionInfo", "SessionPage", "SessionStore", "StoredEvent", "StoredReply",
    "Summary", "Turn", "Window", "create_store",
]

logger = logging.getLogger(__name__)


def create_store(settings: Settings) -> SessionStore:
    """Build the configured backend. Drivers are imported here, so only the chosen one must be installed."""
    backend = settings.memory_backend
    if backend == "memory":
        from memory.in_memory import InMemoryStore

        return InMemoryStore(ttl=settings.session_ttl)
    if backend == "sqlite":
        from memory.sqlite import SQLiteStore

        try:
            return SQLiteStore(settings.session_db, ttl=settings.session_ttl, synchronous=settings.sqlite_synchronous,
                               busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        except StoreUnavailable as e:  # a path that cannot hold a database: stop start-up with one line
            raise ConfigError(f"SESSION_DB={str(settings.session_db)!r}: {e.message}") from e
    if backend == "redis":
        from memory.redis_store import RedisStore

        try:
            return RedisStore.from_url(settings.redis_url, key_prefix=settings.key_prefix, ttl=settings.session_ttl,
                                       cluster=settings.redis_cluster)
        except ValueError as e:  # a URL redis-py (or its cluster client) cannot use
            raise ConfigError(f"REDIS_URL={settings.redis_url!r}: {e}") from e
        except StoreUnavailable as e:  # REDIS_CLUSTER=on: the client reads the slot map at start-up
            raise ConfigError(f"REDIS_URL={settings.redis_url!r} (REDIS_CLUSTER=on): {e.message}") from e
    if backend == "dynamodb":
        from memory.dynamodb import DynamoDBStore, make_client

        store = DynamoDBStore(make_client(settings.aws_region, settings.dynamodb_endpoint_url),
                              settings.dynamodb_table, ttl=settings.session_ttl)
        store.check_table(create=settings.dynamodb_create_table)  # one clear line when the table is wrong
        return store
    if backend == "agentcore":
        from memory.agentcore import AgentCoreStore

        if settings.session_ttl is not None:
            logger.warning("SESSION_TTL does not apply to MEMORY_BACKEND=agentcore: events expire after the "
                           "memory resource's event expiry (eventExpiryDuration, in days)")
        if not settings.memory_id:
            raise ConfigError("MEMORY_BACKEND=agentcore needs MEMORY_ID (or BEDROCK_AGENTCORE_MEMORY_ID)")
        return AgentCoreStore(settings.memory_id, region_name=settings.aws_region)
    if backend == "postgres":  # (becomes a registry entry)
        from memory.postgres import create_postgres_store

        return create_postgres_store(settings)
    raise ConfigError(f"MEMORY_BACKEND={backend!r} is not one of memory, sqlite, redis, agentcore, dynamodb, postgres")
