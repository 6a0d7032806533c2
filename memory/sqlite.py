"""SQLite store: the embedded default. One file, WAL, durable across restarts.

Layout: a ``sessions`` row per (actor_id, session_id) with its counters, and one
``messages`` row per message keyed ``(session_pk, turn, seq)`` (a clustered,
WITHOUT ROWID primary key), so the last k turns are one index range scan that
reads only those rows, however long the session is.

Each ``add_turns`` is one ``BEGIN IMMEDIATE`` transaction: the turn is stored
whole or not at all, and concurrent writers (threads or processes) get
distinct, gap-free counts. ``synchronous=NORMAL`` (the default) survives any
process crash; ``SQLITE_SYNCHRONOUS=FULL`` also survives power loss.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.errors import StoreUnavailable
from memory.base import SessionStore, StoredEvent, Summary, Turn, check_messages, message_from_dict, unavailable_on

logger = logging.getLogger(__name__)

#: how long a write waits for another connection's lock (SQLITE_BUSY_TIMEOUT_MS)
DEFAULT_BUSY_TIMEOUT_MS = 10_000



def _migration_1(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE sessions (
            pk INTEGER PRIMARY KEY,
            actor_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            turns INTEGER NOT NULL DEFAULT 0,
            user_messages INTEGER NOT NULL DEFAULT 0,
            messages INTEGER NOT NULL DEFAULT 0,
            events INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL,
            summary_text TEXT,
            summary_through INTEGER,
            UNIQUE (actor_id, session_id)
        )"""
    )
    db.execute(
        """CREATE TABLE messages (
            session_pk INTEGER NOT NULL REFERENCES sessions (pk),
            turn INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            event_no INTEGER NOT NULL,
            created_at REAL NOT NULL,
            role TEXT NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (session_pk, turn, seq)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX sessions_updated_at ON sessions (updated_at)")


# Numbered schema migrations, applied in order and recorded in PRAGMA user_version,
# so a database written by an older release still opens. Append, never edit.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migration_1]

#: idle connections kept open for reuse; more may be open at once under load, and are closed when done
MAX_IDLE_CONNECTIONS = 8


#: any SQLite failure (locked, read-only, disk full, I/O) is a 503 naming the store
_unavailable = unavailable_on("sqlite", sqlite3.Error, str)


class SQLiteStore(SessionStore):
    name = "sqlite"

    def __init__(self, path: str | Path, *, ttl: int | None = None, synchronous: str = "NORMAL",
                 busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> None:
        """Open (and migrate) the database; ``StoreUnavailable`` if the file cannot be created or opened.

        ``busy_timeout_ms``: how long a write waits for another connection's write lock before
        the request fails with a 503 (``SQLITE_BUSY_TIMEOUT_MS``).
        """
        self._path = Path(path)
        self._ttl = ttl
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout_ms / 1000
        self._idle: list[sqlite3.Connection] = []
        self._idle_lock = threading.Lock()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreUnavailable("sqlite", f"cannot create the directory of {self._path}: {e}") from e
        self._migrate()
        if ttl is not None:
            self.purge_expired()

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for one operation, from the idle pool (or newly opened), given back after it.

        Pooled, not per thread: Strands runs each Agent invocation, and so the memory hooks, on a
        thread of its own, so per-thread connections were opened on every request and never closed.
        Under WAL, readers on different connections never wait for each other.
        """
        with self._idle_lock:
            db = self._idle.pop() if self._idle else None
        if db is None:
            db = self._connect()
        try:
            yield db
        finally:
            keep = not db.in_transaction  # a failed COMMIT or ROLLBACK: never hand that connection out again
            if keep:
                with self._idle_lock:
                    keep = len(self._idle) < MAX_IDLE_CONNECTIONS
                    if keep:
                        self._idle.append(db)
            if not keep:
                db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; whatever fails (even ``COMMIT``), it is rolled back.

        So a failed write (locked, disk full, I/O error) never leaves a pooled connection inside an
        open transaction (one that cannot even roll back is closed, not pooled): the next request
        works as soon as the cause is gone.
        """
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    @_unavailable
    def _migrate(self) -> None:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                migration(db)
                db.execute(f"PRAGMA user_version={number}")
                logger.info("db=<%s> | applied schema migration %d", self._path, number)
            db.execute("COMMIT")
        finally:
            db.close()

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()

    # -- the contract --------------------------------------------------------------------------

    def _cutoff(self) -> float:
        """Sessions last written before this instant are expired (-inf without a TTL)."""
        return time.time() - self._ttl if self._ttl is not None else float("-inf")

    @_unavailable
    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage]) -> int:
        check_messages(messages)
        now = time.time()
        with self._write() as db:
            row = db.execute(
                "SELECT pk, turns, user_messages, messages, events, updated_at FROM sessions "
                "WHERE actor_id = ? AND session_id = ?",
                (actor_id, session_id),
            ).fetchone()
            if row is not None and row[5] < self._cutoff():
                self._delete(db, row[0])
                row = None
            if row is None:
                pk = db.execute(
                    "INSERT INTO sessions (actor_id, session_id, updated_at) VALUES (?, ?, ?) RETURNING pk",
                    (actor_id, session_id, now),
                ).fetchone()[0]
                turns = user_messages = seq = events = 0
            else:
                pk, turns, user_messages, seq, events, _ = row
            events += 1
            rows = []
            for message in messages:
                if message.role == MessageRole.USER:
                    user_messages += 1
                    turns += 1
                elif turns == 0:
                    turns = 1
                seq += 1
                rows.append((pk, turns, seq, events, now, message.role.value, message.text))
            db.executemany(
                "INSERT INTO messages (session_pk, turn, seq, event_no, created_at, role, text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.execute(
                "UPDATE sessions SET turns = ?, user_messages = ?, messages = ?, events = ?, updated_at = ? "
                "WHERE pk = ?",
                (turns, user_messages, seq, events, now, pk),
            )
        return user_messages

    @_unavailable
    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        if k <= 0:
            return []
        with self._connection() as db:
            rows = db.execute(
                "SELECT m.turn, m.role, m.text FROM sessions s "
                "JOIN messages m ON m.session_pk = s.pk AND m.turn > s.turns - ? "
                "WHERE s.actor_id = ? AND s.session_id = ? AND s.updated_at >= ? "
                "ORDER BY m.turn, m.seq",
                (k, actor_id, session_id, self._cutoff()),
            ).fetchall()
        turns: list[Turn] = []
        current = None
        for turn, role, text in rows:
            message = message_from_dict({"role": role, "text": text})
            if message is None:
                continue
            if turn != current:
                turns.append([])
                current = turn
            turns[-1].append(message)
        return turns

    @_unavailable
    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        with self._connection() as db:
            rows = db.execute(
                "SELECT m.event_no, m.created_at, m.role, m.text FROM sessions s "
                "JOIN messages m ON m.session_pk = s.pk "
                "WHERE s.actor_id = ? AND s.session_id = ? AND s.updated_at >= ? "
                "ORDER BY m.turn, m.seq",
                (actor_id, session_id, self._cutoff()),
            ).fetchall()
        events: list[StoredEvent] = []
        for event_no, created_at, role, text in rows:
            if not events or events[-1].event_id != str(event_no):
                events.append(StoredEvent(str(event_no), [], created_at))
            message = message_from_dict({"role": role, "text": text})
            if message is not None:
                events[-1].messages.append(message)
        return events

    @staticmethod
    def _delete(db: sqlite3.Connection, pk: int) -> None:
        db.execute("DELETE FROM messages WHERE session_pk = ?", (pk,))
        db.execute("DELETE FROM sessions WHERE pk = ?", (pk,))

    @_unavailable
    def delete_session(self, actor_id: str, session_id: str) -> int:
        with self._write() as db:
            row = db.execute(
                "SELECT pk, events, updated_at FROM sessions WHERE actor_id = ? AND session_id = ?",
                (actor_id, session_id),
            ).fetchone()
            if row is None:
                return 0
            self._delete(db, row[0])
        return row[1] if row[2] >= self._cutoff() else 0

    @_unavailable
    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT summary_text, summary_through FROM sessions "
                "WHERE actor_id = ? AND session_id = ? AND updated_at >= ? AND summary_text IS NOT NULL",
                (actor_id, session_id, self._cutoff()),
            ).fetchone()
        return Summary(row[0], row[1]) if row else None

    @_unavailable
    def put_summary(self, actor_id: str, session_id: str, summary: Summary) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO sessions (actor_id, session_id, updated_at, summary_text, summary_through) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (actor_id, session_id) "
                "DO UPDATE SET summary_text = excluded.summary_text, summary_through = excluded.summary_through",
                (actor_id, session_id, time.time(), summary.text, summary.through_turn),
            )

    @_unavailable
    def purge_expired(self) -> int:
        """Delete every session not written within the TTL; return how many."""
        if self._ttl is None:
            return 0
        with self._write() as db:
            pks = [r[0] for r in db.execute("SELECT pk FROM sessions WHERE updated_at < ?", (self._cutoff(),))]
            for pk in pks:
                self._delete(db, pk)
        if pks:
            logger.info("db=<%s> | purged %d expired sessions", self._path, len(pks))
        return len(pks)
