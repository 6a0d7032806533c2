"""Versioned schema migrations, applied by the app at start-up or by ``make db-schema``.

Each component (``sessions``, ``longterm``) has numbered ``.sql`` files beside this module; the table
``memory_schema`` records how many of them a database has. Migrating is all-or-nothing: the pending files
and the new version are one transaction, behind a transaction-scoped advisory lock, so two replicas that
start together apply each file once (the second waits, then finds the work done). A database already at
the current version is only read (no DDL, no lock): the app's user needs no CREATE right once a team
has applied the schema itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("sql")

#: per component, its migrations in order. Append, never edit: a database records how many it applied.
MIGRATIONS: dict[str, list[str]] = {
    "sessions": ["001_sessions.sql"],
    "longterm": ["longterm_001.sql", "longterm_002.sql", "longterm_003.sql"],
}

_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS memory_schema (component text PRIMARY KEY, version integer NOT NULL)"


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release than this one."""


def current_version(conn: psycopg.Connection, component: str) -> int:
    """How many of the component's migrations the database (its first schema on the search path) has."""
    exists = conn.execute("SELECT to_regclass('memory_schema') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    row = conn.execute("SELECT version FROM memory_schema WHERE component = %s", (component,)).fetchone()
    return row[0] if row else 0


def migration_sql(component: str, start: int = 0) -> list[tuple[int, str]]:
    """(version, SQL) of each migration after ``start``."""
    return [(n, (SQL_DIR / name).read_text()) for n, name in enumerate(MIGRATIONS[component], 1) if n > start]


def migrate(conn: psycopg.Connection, component: str) -> int:
    """Bring the component's schema to the current version; returns how many migrations were applied."""
    target = len(MIGRATIONS[component])
    found = current_version(conn, component)
    if found == target:
        return 0
    if found > target:
        raise SchemaTooNew(f"the database's {component} schema is version {found}; this release knows {target}")
    with conn.transaction():
        conn.execute("SET LOCAL statement_timeout = 0")  # a migration may take longer than a request may
        # one lock per (schema, component): replicas starting together queue here
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext(%s))", (component,))
        conn.execute(_VERSION_TABLE)
        found = current_version(conn, component)  # another replica may have migrated while we waited
        if found > target:
            raise SchemaTooNew(f"the database's {component} schema is version {found}; this release knows {target}")
        applied = migration_sql(component, found)
        for _version, sql in applied:
            conn.execute(sql)
        if applied:
            conn.execute(
                "INSERT INTO memory_schema (component, version) VALUES (%s, %s) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, target),
            )
    if applied:
        logger.info("schema=<%s> | migrated from version %d to %d", component, found, target)
    return len(applied)


def schema_script(component: str) -> str:
    """The whole schema as one script, for teams that apply schemas with their own tools (``make db-schema``
    prints it with ``--print``): the same files and the same version bookkeeping, in one transaction."""
    parts = ["BEGIN;", _VERSION_TABLE + ";"]
    for _version, sql in migration_sql(component):
        parts.append(sql)
    parts.append(f"INSERT INTO memory_schema (component, version) VALUES ('{component}', "
                 f"{len(MIGRATIONS[component])}) ON CONFLICT (component) DO UPDATE SET version = excluded.version;")
    parts.append("COMMIT;")
    return "\n".join(parts)
