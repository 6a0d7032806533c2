"""PostgreSQL: one shared engine for sessions (this package) and long-term records (``longterm.postgres``).

``MEMORY_BACKEND=postgres`` with ``DATABASE_URL`` (a libpq URL; the password from the URL or the standard
``PG*`` variables, e.g. ``PGPASSWORD``). The app creates and migrates its tables at start-up
(``memory.postgres.schema``); ``make db-schema`` does it ahead of time for teams that manage schemas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory.postgres.connection import describe_params, parse_database_url

if TYPE_CHECKING:
    from core.settings import Settings
    from memory.base import SessionStore

__all__ = ["create_postgres_store", "describe_postgres"]


def create_postgres_store(settings: Settings) -> SessionStore:
    """The session store on ``DATABASE_URL``; ``ConfigError`` naming the variable when the URL is unusable."""
    from memory.postgres.store import PostgresStore

    parse_database_url(settings.database_url)
    return PostgresStore(settings.database_url, ttl=settings.session_ttl, pool_size=settings.database_pool_size,
                         pool_timeout=settings.database_pool_timeout_s,
                         statement_timeout=settings.database_statement_timeout_s)


def describe_postgres(settings: Settings) -> str:
    """For the start-up line: where the database is (user, host, port, database, schema), never the password."""
    params = parse_database_url(settings.database_url)
    return (f"postgres {describe_params(params)} pool {settings.database_pool_size} "
            f"timeout {settings.database_pool_timeout_s:g}s")
