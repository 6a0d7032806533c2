"""Every session backend, described once: how it is built, what it reads, how start-up names and checks it.

``create_store``, the start-up line (``describe_store``), the start-up probe (``probe_store``) and
long-term memory's default (``longterm.registry``) all read ``SESSION_BACKENDS``; nothing else compares
backend names. Adding a backend is a module of its own plus one ``SessionBackend`` entry below. A factory
imports its driver when it is called, so only the chosen backend's driver (redis-py, boto3, ...) must be
installed and loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from core.errors import AssistantError, ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from core.settings import Settings
    from memory.base import SessionStore

logger = logging.getLogger(__name__)

#: the session store's key read by the start-up probe (no session is created by a read)
PROBE_ID = "start-up-check"


@dataclass(frozen=True)
class SessionBackend:
    """One ``MEMORY_BACKEND`` value and everything the rest of the code needs to know about it."""

    name: str
    #: builds the store from the settings (imports the driver; ``ConfigError`` for settings it refuses)
    factory: Callable[[Settings], SessionStore]
    #: the environment variables it reads (``MEMORY_BACKEND`` aside), for the docs and their test
    settings: tuple[str, ...]
    #: where its sessions live, for the start-up line's ``store=<...>`` (never a password)
    describe: Callable[[Settings], str]
    #: whether every replica sees the same sessions; a shared backend gets long-term memory only where its
    #: records are shared too (``long_term``), since records on one replica could not be forgotten on another
    shared: bool
    #: the start-up health probe of a networked store (warns when it does not answer); None: nothing to probe
    probe: Callable[[SessionStore], None] | None = None
    #: the sessions live in this process and end with it (long-term memory's local records do the same)
    in_process: bool = False
    #: ``LTM_BACKEND`` when unset; None: ``sqlite`` for a backend that is not shared, ``off`` for one that is
    long_term: str | None = None
    #: chosen when ``MEMORY_BACKEND`` is unset and this says so (AgentCore: a memory id is configured)
    implied_by: Callable[[Settings], bool] | None = None


def without_password(url: str) -> str:
    """A URL safe to log: ``redis://:secret@host`` -> ``redis://:***@host``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def answers_a_read(store: SessionStore) -> None:
    """The probe of a networked store: one window read; a warning (not a stop) when it does not answer.

    The server still starts: the store may come up after it, and requests answer 503 until then.
    """
    try:
        store.get_last_k_turns(PROBE_ID, PROBE_ID, 1)
    except AssistantError as e:
        logger.warning("%s; requests answer 503 until it is reachable", e.message)


# -- the backends: each factory imports its module only when called ---------------------------------------


def _memory(settings: Settings) -> SessionStore:
    from memory.in_memory import InMemoryStore

    return InMemoryStore(ttl=settings.session_ttl)


def _sqlite(settings: Settings) -> SessionStore:
    from memory.sqlite import SQLiteStore

    try:
        return SQLiteStore(settings.session_db, ttl=settings.session_ttl, synchronous=settings.sqlite_synchronous,
                           busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    except StoreUnavailable as e:  # a path that cannot hold a database: stop start-up with one line
        raise ConfigError(f"SESSION_DB={str(settings.session_db)!r}: {e.message}") from e


def _redis(settings: Settings) -> SessionStore:
    from memory.redis_store import RedisStore

    try:
        return RedisStore.from_url(settings.redis_url, key_prefix=settings.key_prefix, ttl=settings.session_ttl,
                                   cluster=settings.redis_cluster)
    except ValueError as e:  # a URL redis-py (or its cluster client) cannot use
        raise ConfigError(f"REDIS_URL={settings.redis_url!r}: {e}") from e
    except StoreUnavailable as e:  # REDIS_CLUSTER=on: the client reads the slot map at start-up
        raise ConfigError(f"REDIS_URL={settings.redis_url!r} (REDIS_CLUSTER=on): {e.message}") from e


def _dynamodb(settings: Settings) -> SessionStore:
    from memory.dynamodb import DynamoDBStore, make_client

    store = DynamoDBStore(make_client(settings.aws_region, settings.dynamodb_endpoint_url),
                          settings.dynamodb_table, ttl=settings.session_ttl)
    store.check_table(create=settings.dynamodb_create_table)  # one clear line when the table is wrong or unreachable
    return store


def _agentcore(settings: Settings) -> SessionStore:
    from memory.agentcore import AgentCoreStore

    if settings.session_ttl is not None:
        logger.warning("SESSION_TTL does not apply to MEMORY_BACKEND=agentcore: events expire after the "
                       "memory resource's event expiry (eventExpiryDuration, in days)")
    if not settings.memory_id:
        raise ConfigError("MEMORY_BACKEND=agentcore needs MEMORY_ID (or BEDROCK_AGENTCORE_MEMORY_ID)")
    return AgentCoreStore(settings.memory_id, region_name=settings.aws_region)


def _describe_dynamodb(settings: Settings) -> str:
    where = f"at {settings.dynamodb_endpoint_url}" if settings.dynamodb_endpoint_url else f"in {settings.aws_region}"
    return f"dynamodb table {settings.dynamodb_table} {where}"


SESSION_BACKENDS: dict[str, SessionBackend] = {entry.name: entry for entry in (
    SessionBackend(
        "memory", _memory, ("SESSION_TTL",), lambda s: "memory (in this process; gone when it stops)",
        shared=False, in_process=True),
    SessionBackend(
        "sqlite", _sqlite, ("SESSION_DB", "SQLITE_SYNCHRONOUS", "SQLITE_BUSY_TIMEOUT_MS", "SESSION_TTL"),
        lambda s: f"sqlite {s.session_db.resolve()}",
        shared=False),  # opened (and checked) when built: nothing to probe
    SessionBackend(
        "redis", _redis, ("REDIS_URL", "KEY_PREFIX", "REDIS_CLUSTER", "SESSION_TTL"),
        lambda s: f"redis {without_password(s.redis_url)} prefix {s.key_prefix!r}",
        shared=True, probe=answers_a_read),
    SessionBackend(
        "dynamodb", _dynamodb,
        ("DYNAMODB_TABLE", "DYNAMODB_ENDPOINT_URL", "DYNAMODB_CREATE_TABLE", "AWS_REGION", "SESSION_TTL"),
        _describe_dynamodb,
        shared=True),  # its table is checked when built (check_table): an unreachable endpoint stops start-up
    SessionBackend(
        "agentcore", _agentcore, ("MEMORY_ID", "BEDROCK_AGENTCORE_MEMORY_ID", "AWS_REGION"),
        lambda s: f"agentcore memory {s.memory_id} in {s.aws_region}",
        shared=True, long_term="agentcore",  # a call to AWS per request: nothing to probe at start-up
        implied_by=lambda s: s.memory_id is not None),
)}
#: ``MEMORY_BACKEND`` when it is unset and no entry's ``implied_by`` holds
DEFAULT_BACKEND = "sqlite"


def session_backend(settings: Settings) -> SessionBackend:
    """The entry ``MEMORY_BACKEND`` names (or the default); ``ConfigError`` naming the choices when it names none."""
    name = settings.memory_backend
    if not name:
        name = next((e.name for e in SESSION_BACKENDS.values() if e.implied_by and e.implied_by(settings)),
                    DEFAULT_BACKEND)
    try:
        return SESSION_BACKENDS[name]
    except KeyError:
        raise ConfigError(f"MEMORY_BACKEND={name!r} is not one of {', '.join(SESSION_BACKENDS)}") from None


def backend_named(name: str) -> SessionBackend:
    """The entry of a store's ``name`` (``SessionStore.name``)."""
    try:
        return SESSION_BACKENDS[name]
    except KeyError:
        raise ConfigError(f"no session backend is named {name!r} (one of {', '.join(SESSION_BACKENDS)})") from None
