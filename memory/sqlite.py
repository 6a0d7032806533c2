"""SQLite store: the embedded default. One file, WAL, durable across restarts.

Layout: a ``sessions`` row per (actor_id, session_id) with its counters, and one
``messages`` row per message keyed ``(session_pk, turn, seq)`` (a clustered,
WITHOUT ROWID primary key), so the last k turns are one index range scan that
reads only those rows, however long the session is.

Each ``add_turns`` is one ``BEGIN IMMEDIATE`` transaction: the turn is stored
whole or not at all, and concurrent writers (threads or processes) get
distinct, gap-free counts. ``synchronous=NORMAL`` (the default) survives any
process crash; ``SQLITE_SYNCHRONOUS=FULL`` also survives power loss.

A deleted session keeps its ``sessions`` row as a tombstone (counters reset,
``generation`` + 1), so a turn or summary begun before the delete is refused
inside the same ``BEGIN IMMEDIATE`` that would have written it. Idempotency
keys live in ``requests`` (per session, written in the turn's transaction).
Each actor's sessions are listed through the index ``(actor_id, written_at,
session_id)``. With ``SESSION_TTL`` (``memory.expiry``), ``updated_at`` is the instant the TTL counts
from: a write's time, or later while a turn's load holds the session; a session found expired
holding turns is emptied and its generation moves on. Connections, transactions and migrations are ``core.sqlite``'s:
every write transaction first checks that the file on disk is still the one the
store opened (``st_dev``/``st_ino``), so a database deleted or replaced under a
running server fails writes with a 503, never acknowledges them into an unlinked file.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.errors import AlreadyStored, DatabaseFileChanged, SessionChanged, StoreUnavailable
from core.sqlite import DEFAULT_BUSY_TIMEOUT_MS, Migration, SQLiteDatabase
from memory.expiry import DEFAULT_TURN_GRACE
from memory.base import (
    HistoryPage, SessionInfo, SessionPage, SessionStore, StoredEvent, StoredReply, Summary, Turn, Window,
    check_idempotency_key, check_messages, clip_first_message, decode_cursor, generation_retention, history_bounds,
    history_page, history_turn, message_from_fields, page_sessions, reply_of, request_retention, unavailable_on,
)
from memory.messages import turns_by_number

logger = logging.getLogger(__name__)


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


def _migration_2(db: sqlite3.Connection) -> None:
    """Generations (a deleted session's row stays as a tombstone), the listing order, idempotency records."""
    db.execute("ALTER TABLE sessions ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")
    # last add_turns (epoch seconds); NULL while the session holds no turns. updated_at stays the TTL clock.
    db.execute("ALTER TABLE sessions ADD COLUMN written_at REAL")
    db.execute("UPDATE sessions SET written_at = updated_at WHERE messages > 0")
    db.execute("CREATE INDEX sessions_actor_written ON sessions (actor_id, written_at, session_id)")
    # only purge_expired (at start-up, with a TTL) filtered on updated_at: a scan there is cheaper than
    # updating this index on every turn (and, with a TTL, on every load_window)
    db.execute("DROP INDEX sessions_updated_at")
    db.execute(
        """CREATE TABLE requests (
            session_pk INTEGER NOT NULL REFERENCES sessions (pk),
            key TEXT NOT NULL,
            stored_at REAL NOT NULL,
            message_count INTEGER NOT NULL,
            event_no INTEGER NOT NULL,
            first_turn INTEGER NOT NULL,
            last_turn INTEGER NOT NULL,
            PRIMARY KEY (session_pk, key)
        ) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX requests_stored_at ON requests (session_pk, stored_at)")


def _migration_3(db: sqlite3.Connection) -> None:
    """The turns holding a session (``memory.expiry``): how many, and until when the newest of them does."""
    db.execute("ALTER TABLE sessions ADD COLUMN holds INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE sessions ADD COLUMN hold_until REAL")


# Numbered schema migrations, applied in order and recorded in PRAGMA user_version,
# so a database written by an older release still opens. Append, never edit.
MIGRATIONS: list[Migration] = [_migration_1, _migration_2, _migration_3]

#: any SQLite failure (locked, read-only, disk full, I/O, the file deleted or replaced) is a 503 naming the store
_driver_errors = (sqlite3.Error, DatabaseFileChanged)
_unavailable = unavailable_on("sqlite", _driver_errors, str)


class SQLiteStore(SessionStore):
    name = "sqlite"

    def __init__(self, path: str | Path, *, ttl: int | None = None, synchronous: str = "NORMAL",
                 busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, turn_grace: float = DEFAULT_TURN_GRACE) -> None:
        """Open (and migrate) the database; ``StoreUnavailable`` if the file cannot be created or opened.

        ``turn_grace``: the longest a turn takes from its ``load_window`` to its write (``memory.expiry``).

        ``busy_timeout_ms``: how long a write waits for another connection's write lock before
        the request fails with a 503 (``SQLITE_BUSY_TIMEOUT_MS``).
        """
        self._path = Path(path)
        self._ttl = ttl
        self._turn_grace = turn_grace
        try:
            self._db = SQLiteDatabase(self._path, migrations=MIGRATIONS, synchronous=synchronous,
                                      busy_timeout_ms=busy_timeout_ms, pragmas={"foreign_keys": "ON"})
        except OSError as e:
            raise StoreUnavailable("sqlite", f"cannot create the directory of {self._path}: {e}") from e
        except _driver_errors as e:
            raise StoreUnavailable("sqlite", str(e)) from e
        if ttl is not None:
            self.purge_expired()

    def close(self) -> None:
        self._db.close()

    # -- helpers -------------------------------------------------------------------------------

    def _cutoff(self) -> float:
        """Sessions last active before this instant are expired (-inf without a TTL)."""
        return time.time() - self._ttl if self._ttl is not None else float("-inf")

    def _expired_life(self, updated_at: float, messages: int) -> int:
        """1 if a session row is an expired life holding turns (its generation moves on when found), else 0."""
        return int(messages > 0 and updated_at < self._cutoff())

    @staticmethod
    def _reset(db: sqlite3.Connection, pk: int) -> None:
        """Empty a session but keep its row (and so its generation): the tombstone of a delete or expiry."""
        db.execute("DELETE FROM messages WHERE session_pk = ?", (pk,))
        db.execute("DELETE FROM requests WHERE session_pk = ?", (pk,))
        db.execute(
            "UPDATE sessions SET turns = 0, user_messages = 0, messages = 0, events = 0, written_at = NULL, "
            "summary_text = NULL, summary_through = NULL, holds = 0, hold_until = NULL WHERE pk = ?",
            (pk,),
        )

    @staticmethod
    def _delete(db: sqlite3.Connection, pk: int) -> None:
        db.execute("DELETE FROM messages WHERE session_pk = ?", (pk,))
        db.execute("DELETE FROM requests WHERE session_pk = ?", (pk,))
        db.execute("DELETE FROM sessions WHERE pk = ?", (pk,))

    @staticmethod
    def _stored_reply(db: sqlite3.Connection, pk: int, key: str, since: float) -> StoredReply | None:
        rows = db.execute(
            "SELECT r.message_count, m.role, m.text FROM requests r "
            "LEFT JOIN messages m ON m.session_pk = r.session_pk AND m.turn BETWEEN r.first_turn AND r.last_turn "
            "AND m.event_no = r.event_no "
            "WHERE r.session_pk = ? AND r.key = ? AND r.stored_at >= ? ORDER BY m.turn, m.seq",
            (pk, key, since),
        ).fetchall()
        if not rows:
            return None
        messages = [message_from_fields(role, text) for _, role, text in rows if role is not None]
        return StoredReply(rows[0][0], reply_of([m for m in messages if m is not None]))

    # -- writes --------------------------------------------------------------------------------

    @_unavailable
    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage], *,
                  generation: int | None = None, idempotency_key: str | None = None) -> int:
        check_messages(messages)
        check_idempotency_key(idempotency_key)
        now = time.time()
        with self._db.write() as db:
            row = db.execute(
                "SELECT pk, turns, user_messages, messages, events, updated_at, generation, holds, hold_until "
                "FROM sessions WHERE actor_id = ? AND session_id = ?",
                (actor_id, session_id),
            ).fetchone()
            if row is not None and row[5] < self._cutoff():
                # expired: it starts again at 1, under a new generation if it held turns
                self._reset(db, row[0])
                bump = self._expired_life(row[5], row[3])
                db.execute("UPDATE sessions SET generation = generation + ? WHERE pk = ?", (bump, row[0]))
                row = (row[0], 0, 0, 0, 0, now, row[6] + bump, 0, None)
            if generation is not None and (row[6] if row else 0) != generation:
                raise SessionChanged()
            since = now - request_retention(self._ttl)
            if idempotency_key is not None and row is not None:
                stored = self._stored_reply(db, row[0], idempotency_key, since)
                if stored is not None:
                    raise AlreadyStored(stored.message_count, stored.reply)
            if row is None:
                pk = db.execute(
                    "INSERT INTO sessions (actor_id, session_id, updated_at) VALUES (?, ?, ?) RETURNING pk",
                    (actor_id, session_id, now),
                ).fetchone()[0]
                turns = user_messages = seq = events = 0
            else:
                pk, turns, user_messages, seq, events = row[:5]
            events += 1
            first_turn = None
            rows = []
            for message in messages:
                if message.role == MessageRole.USER:
                    user_messages += 1
                    turns += 1
                elif turns == 0:
                    turns = 1
                first_turn = first_turn or turns
                seq += 1
                rows.append((pk, turns, seq, events, now, message.role.value, message.text))
            db.executemany(
                "INSERT INTO messages (session_pk, turn, seq, event_no, created_at, role, text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            # this turn's hold ends (memory.expiry): the TTL counts from now, unless other turns still hold it
            holds = row[7] if row is not None and row[8] is not None and row[8] >= now else 0
            db.execute(
                "UPDATE sessions SET turns = ?, user_messages = ?, messages = ?, events = ?, "
                "updated_at = CASE WHEN ? > 1 THEN max(updated_at, ?) ELSE ? END, holds = max(? - 1, 0), "
                "hold_until = CASE WHEN ? > 1 THEN hold_until END, written_at = ? WHERE pk = ?",
                (turns, user_messages, seq, events, holds, now, now, holds, holds, now, pk),
            )
            if idempotency_key is not None:
                db.execute("DELETE FROM requests WHERE session_pk = ? AND stored_at < ?", (pk, since))
                db.execute(
                    "INSERT OR REPLACE INTO requests (session_pk, key, stored_at, message_count, event_no, "
                    "first_turn, last_turn) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (pk, idempotency_key, now, user_messages, events, first_turn, turns),
                )
        return user_messages

    @_unavailable
    def delete_session(self, actor_id: str, session_id: str) -> int:
        now = time.time()
        with self._db.write() as db:
            row = db.execute(
                "SELECT pk, events, updated_at, messages FROM sessions WHERE actor_id = ? AND session_id = ?",
                (actor_id, session_id),
            ).fetchone()
            if row is None:  # never written: the tombstone still records the delete
                db.execute("INSERT INTO sessions (actor_id, session_id, updated_at, generation) VALUES (?, ?, ?, 1)",
                           (actor_id, session_id, now))
                return 0
            self._reset(db, row[0])
            db.execute("UPDATE sessions SET generation = generation + ?, updated_at = ? WHERE pk = ?",
                       (1 + self._expired_life(row[2], row[3]), now, row[0]))
        return row[1] if row[2] >= self._cutoff() else 0

    @_unavailable
    def put_summary(self, actor_id: str, session_id: str, summary: Summary, *, generation: int | None = None) -> bool:
        with self._db.write() as db:
            row = db.execute(
                "SELECT pk, generation, updated_at, user_messages, messages FROM sessions "
                "WHERE actor_id = ? AND session_id = ?",
                (actor_id, session_id),
            ).fetchone()
            if generation is not None and ((row[1] + self._expired_life(row[2], row[4]) if row else 0) != generation
                                           or (row[3] if row and row[2] >= self._cutoff() else 0)
                                           < summary.through_turn):
                return False  # cleared since (or the turns it summarises are gone)
            if row is None:  # a row without messages: no count, not listed
                db.execute(
                    "INSERT INTO sessions (actor_id, session_id, updated_at, summary_text, summary_through) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (actor_id, session_id, time.time(), summary.text, summary.through_turn),
                )
                return True
            if row[2] < self._cutoff():
                return False  # expired: its summary must not reach the session that starts next
            db.execute("UPDATE sessions SET summary_text = ?, summary_through = ? WHERE pk = ?",
                       (summary.text, summary.through_turn, row[0]))
            return True

    @_unavailable
    def purge_expired(self) -> int:
        """Empty every session not active within the TTL; return how many.

        A session that held turns stays as a tombstone, its generation moved on (``memory.expiry``), for
        ``generation_retention`` (at least 7 days) after its last activity, as a deleted one does; a row
        that never held a turn nor was deleted goes.
        """
        if self._ttl is None:
            return 0
        tombstone_cutoff = time.time() - generation_retention(self._ttl)
        with self._db.write() as db:
            rows = db.execute("SELECT pk, generation, updated_at, messages FROM sessions WHERE updated_at < ?",
                              (self._cutoff(),)).fetchall()
            purged = 0
            for pk, generation, updated_at, messages in rows:
                purged += messages > 0
                if updated_at < tombstone_cutoff or (generation == 0 and messages == 0):
                    self._delete(db, pk)
                elif messages > 0:
                    self._reset(db, pk)
                    db.execute("UPDATE sessions SET generation = generation + 1 WHERE pk = ?", (pk,))
        if purged:
            logger.info("db=<%s> | purged %d expired sessions", self._path, purged)
        return purged

    # -- reads ---------------------------------------------------------------------------------

    def load_window(self, actor_id: str, session_id: str, k: int) -> Window:
        """One query, the rolling summary included (with a TTL, one ``BEGIN IMMEDIATE`` that also restarts the
        session's expiry)."""
        return self._window(actor_id, session_id, k, touch=self._ttl is not None)

    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        return self._window(actor_id, session_id, k, touch=False).turns

    @_unavailable
    def _window(self, actor_id: str, session_id: str, k: int, *, touch: bool) -> Window:
        # One statement: the session's row first (turn -1, with its rolling summary), then the last k turns'
        # messages by primary key.
        query = (
            "SELECT -1, 0, generation + (updated_at < :cutoff AND messages > 0), updated_at >= :cutoff, "
            "user_messages, summary_text, summary_through "
            "FROM sessions WHERE actor_id = :actor AND session_id = :session "
            "UNION ALL SELECT m.turn, m.seq, m.role, m.text, NULL, NULL, NULL FROM sessions s "
            "JOIN messages m ON m.session_pk = s.pk AND m.turn > s.turns - :k "
            "WHERE s.actor_id = :actor AND s.session_id = :session AND s.updated_at >= :cutoff ORDER BY 1, 2"
        )
        params = {"cutoff": self._cutoff(), "k": k, "actor": actor_id, "session": session_id}
        if not touch:
            with self._db.connection() as db:
                rows = db.execute(query, params).fetchall()
        else:
            with self._db.write() as db:
                assert self._ttl is not None  # hold the session for the turn (memory.expiry)
                now = time.time()
                hold_until = now + max(self._ttl, self._turn_grace)
                db.execute(
                    "UPDATE sessions SET updated_at = max(updated_at, :hold_until - :ttl), "
                    "holds = CASE WHEN hold_until >= :now THEN holds ELSE 0 END + 1, hold_until = :hold_until "
                    "WHERE actor_id = :actor AND session_id = :session AND updated_at >= :cutoff AND messages > 0",
                    {**params, "now": now, "ttl": self._ttl, "hold_until": hold_until},
                )
                rows = db.execute(query, params).fetchall()
        if not rows or rows[0][0] != -1:
            return Window([], 0, 0, summary_read=True)
        _, _, generation, live, count, summary_text, summary_through = rows[0]
        summary = Summary(summary_text, summary_through) if live and summary_text is not None else None
        turns = turns_by_number((turn, message_from_fields(role, text)) for turn, _, role, text, *_ in rows[1:])
        return Window(turns, generation, count if live else 0, summary, summary_read=True)

    @_unavailable
    def find_request(self, actor_id: str, session_id: str, key: str) -> StoredReply | None:
        with self._db.snapshot() as db:
            row = db.execute("SELECT pk FROM sessions WHERE actor_id = ? AND session_id = ? AND updated_at >= ?",
                             (actor_id, session_id, self._cutoff())).fetchone()
            if row is None:
                return None
            return self._stored_reply(db, row[0], key, time.time() - request_retention(self._ttl))

    @_unavailable
    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        with self._db.connection() as db:
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
            message = message_from_fields(role, text)
            if message is not None:
                events[-1].messages.append(message)
        return events

    @_unavailable
    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        with self._db.connection() as db:
            row = db.execute(
                "SELECT summary_text, summary_through FROM sessions "
                "WHERE actor_id = ? AND session_id = ? AND updated_at >= ? AND summary_text IS NOT NULL",
                (actor_id, session_id, self._cutoff()),
            ).fetchone()
        return Summary(row[0], row[1]) if row else None

    @_unavailable
    def list_sessions(self, actor_id: str, limit: int, cursor: str | None = None) -> SessionPage:
        """One range of the index ``(actor_id, written_at, session_id)``, read backwards: other actors cost nothing."""
        position = decode_cursor(cursor) if cursor is not None else None
        after = "" if position is None else "AND (s.written_at < :at OR (s.written_at = :at AND s.session_id < :id))"
        with self._db.connection() as db:
            rows = db.execute(
                "SELECT s.session_id, s.user_messages, s.written_at, (SELECT m.text FROM messages m "
                "WHERE m.session_pk = s.pk AND m.role = 'USER' ORDER BY m.turn, m.seq LIMIT 1) "
                "FROM sessions s "
                "WHERE s.actor_id = :actor AND s.written_at IS NOT NULL AND s.messages > 0 AND s.updated_at >= :cutoff "
                f"{after} ORDER BY s.written_at DESC, s.session_id DESC LIMIT :n",
                {"actor": actor_id, "cutoff": self._cutoff(), "n": limit + 1,
                 "at": position[0] if position else None, "id": position[1] if position else None},
            ).fetchall()
        infos = [SessionInfo(session_id, count, written_at, clip_first_message(first if isinstance(first, str)
                                                                               else ""))
                 for session_id, count, written_at, first in rows]
        return page_sessions(infos, limit)

    @_unavailable
    def get_history(self, actor_id: str, session_id: str, limit: int, before: int | None = None) -> HistoryPage:
        """Two primary-key reads in one snapshot: the session's counters, then the page's turns."""
        with self._db.snapshot() as db:
            row = db.execute(
                "SELECT pk, turns, user_messages FROM sessions WHERE actor_id = ? AND session_id = ? "
                "AND updated_at >= ?",
                (actor_id, session_id, self._cutoff()),
            ).fetchone()
            if row is None or row[1] == 0:
                return HistoryPage([], None)
            pk, total, users = row
            lead = total - users
            lo, hi = history_bounds(total, lead, limit, before)
            rows = db.execute(
                "SELECT turn, role, text, created_at FROM messages WHERE session_pk = ? AND turn BETWEEN ? AND ? "
                "ORDER BY turn, seq",
                (pk, lo, hi),
            ).fetchall() if hi >= lo else []
        grouped: dict[int, tuple[list[ConversationalMessage], float]] = {}
        for turn, role, text, created_at in rows:
            messages, _ = grouped.setdefault(turn, ([], created_at))
            message = message_from_fields(role, text)
            if message is not None:
                messages.append(message)
        turns = [history_turn(turn - lead, messages, created_at) for turn, (messages, created_at) in grouped.items()]
        return history_page(turns, lo > 1 and hi >= lo)
