"""The long-term records file's schema: numbered migrations (``PRAGMA user_version``), append-only.

What each table holds is described in ``longterm.sqlite_store``.
"""

from __future__ import annotations

import secrets
import sqlite3

from core.sqlite import Migration

#: the columns of migration 1's FTS5 index (dropped by migration 4)
FTS_COLUMNS = ("text", "caption", "prev", "next", "date")


def _migration_1(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE ltm_records (
            id INTEGER PRIMARY KEY,
            actor_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            generation INTEGER NOT NULL,
            turn INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL,
            speaker TEXT NOT NULL,
            text TEXT NOT NULL,
            caption TEXT NOT NULL,
            created_at REAL NOT NULL,
            vector BLOB NOT NULL,
            UNIQUE (actor_id, session_id, generation, turn, seq)
        )"""
    )
    db.execute("CREATE INDEX ltm_records_actor ON ltm_records (actor_id, id)")
    db.execute(f"CREATE VIRTUAL TABLE ltm_fts USING fts5({', '.join(FTS_COLUMNS)}, owner, "
               "tokenize='porter unicode61')")
    db.execute("""CREATE TABLE ltm_actors (
            actor_id TEXT PRIMARY KEY,
            epoch INTEGER NOT NULL DEFAULT 0,
            version INTEGER NOT NULL DEFAULT 0,
            deletes INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""")
    db.execute("""CREATE TABLE ltm_sessions (
            actor_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            deleted_generation INTEGER NOT NULL,
            PRIMARY KEY (actor_id, session_id)
        ) WITHOUT ROWID""")


def _migration_2(db: sqlite3.Connection) -> None:
    """Text first, vectors later; public ids that reveal nothing; per-actor numbering for paging."""
    db.execute("ALTER TABLE ltm_records ADD COLUMN token TEXT")
    db.execute("ALTER TABLE ltm_records ADD COLUMN actor_seq INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE ltm_records ADD COLUMN vector_seq INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE ltm_actors ADD COLUMN records INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE ltm_actors ADD COLUMN embedded INTEGER NOT NULL DEFAULT 0")
    for (rowid,) in db.execute("SELECT id FROM ltm_records WHERE token IS NULL").fetchall():
        db.execute("UPDATE ltm_records SET token = ? WHERE id = ?", (new_token(), rowid))
    db.execute("UPDATE ltm_records SET actor_seq = numbered.n FROM (SELECT id, row_number() OVER "
               "(PARTITION BY actor_id ORDER BY id) AS n FROM ltm_records) AS numbered "
               "WHERE numbered.id = ltm_records.id")
    db.execute("UPDATE ltm_actors SET records = coalesce((SELECT max(actor_seq) FROM ltm_records r "
               "WHERE r.actor_id = ltm_actors.actor_id), 0)")
    db.execute("CREATE UNIQUE INDEX ltm_records_token ON ltm_records (token)")
    db.execute("CREATE INDEX ltm_records_actor_seq ON ltm_records (actor_id, actor_seq)")
    db.execute("CREATE INDEX ltm_records_vector_seq ON ltm_records (actor_id, vector_seq)")
    # the records still waiting for a vector: the background writer's (and a restart's) work list
    db.execute("CREATE INDEX ltm_records_unembedded ON ltm_records (id) WHERE length(vector) = 0")


def _migration_3(db: sqlite3.Connection) -> None:
    """When a session's records were deleted: a tombstone refuses late records of the cleared life only."""
    db.execute("ALTER TABLE ltm_sessions ADD COLUMN deleted_at REAL NOT NULL DEFAULT 0")


def _migration_4(db: sqlite3.Connection) -> None:
    """No keyword index: the search scores BM25F in memory (``longterm.keyword``), and nothing read the FTS5
    table that every write kept up to date (0.3 ms of a turn's 0.4 ms of writing, two thirds of the file). Its
    copies of deleted records' text go with it."""
    db.execute("DROP TABLE IF EXISTS ltm_fts")


#: append, never edit: a file written by an older release still opens
MIGRATIONS: list[Migration] = [_migration_1, _migration_2, _migration_3, _migration_4]

#: an empty BLOB in ``vector``: the record is stored, its embedding not yet
NO_VECTOR = b""


def new_token() -> str:
    """A public record id: 128 random bits, hex (nothing in it orders or counts anyone's records)."""
    return secrets.token_hex(16)
