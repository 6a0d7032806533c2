"""Where local long-term records live: SQLite, a file (durable) or a private in-process database.

Tables (numbered migrations in ``PRAGMA user_version`` of their own file, ``longterm.sqlite_schema``):

- ``ltm_records``: one row per message record with its provenance, its text and
  its embedding (384 float32, a BLOB; empty until the background writer adds
  it). Unique per (actor, session, generation, turn, seq), so a record written
  twice is stored once, and a session id reused in a new generation (after
  expiry) stores its new turns. ``token`` is the public record id (128 random
  bits: it says nothing about other actors' activity); ``actor_seq`` numbers an
  actor's records (the ``list_records`` cursor); ``vector_seq`` says when its
  vector was added (per actor), so a cached actor picks up new vectors only.
- no keyword index: a search scores BM25F in memory over the cached actor's terms
  (``longterm.keyword``). The FTS5 index of the first releases (``ltm_fts``) was
  kept up to date on every write for nothing the product read: 0.3 ms of a turn's
  0.4 ms of writing and two thirds of the file. Migration 4 drops it; the
  benchmark's keyword baseline builds its own (``bench/ltm_baseline.py``).
- ``ltm_actors``: per actor its *epoch* (bumped by ``forget``), a *version*
  (bumped by every change), which the in-memory vector cache compares, so a
  second process writing the same file is seen by the next search, and the
  counters behind ``actor_seq`` and ``vector_seq``.
- ``ltm_sessions``: per deleted (actor, session) the highest generation deleted and when (``cleared_since``):
  a tombstone that refuses late writes of that session.

The text of a record is written on the request path (``write``: durable, and
keyword-searchable by the next search, before the reply is acknowledged); its vector later
(``add_vectors``, conditional on the row still being there without one, so a
delete stays deleted). Every write is one ``BEGIN IMMEDIATE`` transaction that checks the epoch and the
tombstone before it inserts, and ``forget`` / ``delete_session`` take the same
lock, so a write that started before a delete can never land after it, on any
process that shares the file. Connections, transactions and migrations are
``core.sqlite``'s: a write also checks that the file on disk is still the one
opened, so records written after the file was deleted or replaced are refused
(``LongTermUnavailable``), never acknowledged into an unlinked file.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DatabaseFileChanged, LongTermUnavailable
from core.sqlite import DEFAULT_BUSY_TIMEOUT_MS, SQLiteDatabase
from longterm.base import MessageRecord, cleared_since
from longterm.sqlite_schema import MIGRATIONS, NO_VECTOR, new_token
from longterm.index import ActorBuffers, ActorIndex, empty_index, keep_bounded

logger = logging.getLogger(__name__)

#: rows of vectors kept in memory over all cached actors (float32: 1.5 kB each)
CACHE_ROWS = 40_000


@dataclass(frozen=True)
class StoredRecord:
    id: int
    session_id: str
    turn: int
    role: str
    text: str
    created_at: float
    #: the public record id
    token: str = ""


_RECORD_COLUMNS = "id, session_id, turn, role, text, created_at, token"


@dataclass(frozen=True)
class Unembedded:
    """A stored record still waiting for its vector (the background writer's work)."""

    id: int
    actor_id: str
    session_id: str
    turn: int
    speaker: str
    text: str
    #: the public id: what the vector is stored by (an internal id can be reused once its row is deleted)
    token: str


@dataclass(frozen=True)
class StoredPage:
    records: list[StoredRecord]
    #: the ``actor_seq`` to continue below; None on the last page
    next_below: int | None


#: what a failing SQLite file raises: each becomes a ``LongTermUnavailable`` (503) naming the store
_unavailable_errors = (sqlite3.Error, DatabaseFileChanged)


class SQLiteLongTermStore:
    """Long-term records in SQLite. ``path=None``: a private in-process database (not durable)."""

    def __init__(self, path: str | Path | None, *, synchronous: str = "NORMAL",
                 busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, cache_rows: int = CACHE_ROWS) -> None:
        self.path = Path(path) if path is not None else None
        self.durable = path is not None
        self._cache: OrderedDict[str, ActorBuffers] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._load_lock = threading.RLock()  # one full load at a time: concurrent searches wait for it
        self._cache_rows = cache_rows
        try:
            self._db = SQLiteDatabase(self.path, migrations=MIGRATIONS, synchronous=synchronous,
                                      busy_timeout_ms=busy_timeout_ms)
        except (OSError, *_unavailable_errors) as e:
            raise LongTermUnavailable(f"cannot open the long-term store {self.where}: {e}") from e

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "in process memory"

    def close(self) -> None:
        self._db.close()
        with self._cache_lock:
            self._cache.clear()

    # -- reads -------------------------------------------------------------------------------

    def _guard(self, what: str) -> Callable[[Exception], LongTermUnavailable]:
        return lambda e: LongTermUnavailable(f"long-term store {self.where}: {what} failed: {e}")

    def epoch(self, actor_id: str) -> int:
        try:
            with self._db.connection() as db:
                row = db.execute("SELECT epoch FROM ltm_actors WHERE actor_id = ?", (actor_id,)).fetchone()
        except _unavailable_errors as e:
            raise self._guard("reading the epoch")(e) from e
        return row[0] if row else 0

    def actor_index(self, actor_id: str) -> ActorIndex:
        """The actor's records as arrays: from the cache while the actor's version is unchanged.

        A version change with no delete since the cached copy appends only the new rows (in place:
        no copy of the others) and the vectors added since (``vector_seq``); after a delete the actor
        is loaded again whole.
        """
        select = ("SELECT id, session_id, generation, turn, seq, speaker, vector, text, caption, created_at "
                  "FROM ltm_records WHERE actor_id = ?")
        try:
            with self._db.connection() as db:
                row = db.execute("SELECT version, deletes, embedded FROM ltm_actors WHERE actor_id = ?",
                                 (actor_id,)).fetchone()
                if row is None:
                    return empty_index()
                version, deletes, embedded = row
                with self._cache_lock:
                    buffers = self._cache.get(actor_id)
                    if buffers is not None:
                        self._cache.move_to_end(actor_id)
                if buffers is not None and buffers.version == version:
                    return buffers.snapshot()
                if buffers is not None and buffers.deletes == deletes:
                    seen = buffers.embedded
                    buffers.append(db.execute(select + " AND id > ? ORDER BY id", (actor_id, buffers.last_id)), version)
                    if embedded != seen:
                        buffers.add_vectors(db.execute(
                            "SELECT id, vector FROM ltm_records WHERE actor_id = ? AND vector_seq > ?",
                            (actor_id, seen)), embedded)
                else:
                    with self._load_lock:
                        with self._cache_lock:
                            loaded = self._cache.get(actor_id)
                        if loaded is not None and loaded.deletes == deletes:  # another search just loaded it
                            return self.actor_index(actor_id)
                        count = db.execute("SELECT count(*) FROM ltm_records WHERE actor_id = ?", (actor_id,)).fetchone()[0]
                        buffers = ActorBuffers(version, deletes, capacity=count + count // 8 + 64)
                        buffers.embedded = embedded  # read before the rows: a vector added meanwhile is in them
                        buffers.append(db.execute(select + " ORDER BY id", (actor_id,)), version)
                        self._keep(actor_id, buffers)
        except _unavailable_errors as e:
            raise self._guard("loading the records")(e) from e
        self._keep(actor_id, buffers)
        return buffers.snapshot()

    def _keep(self, actor_id: str, buffers: ActorBuffers) -> None:
        with self._cache_lock:
            keep_bounded(self._cache, actor_id, buffers, self._cache_rows)

    def fetch(self, actor_id: str, ids: Sequence[int]) -> dict[int, StoredRecord]:
        """The records of ``ids`` that belong to the actor (a record deleted meanwhile is missing)."""
        if not len(ids):
            return {}
        marks = ",".join("?" * len(ids))
        try:
            with self._db.connection() as db:
                rows = db.execute(
                    f"SELECT {_RECORD_COLUMNS} FROM ltm_records "
                    f"WHERE actor_id = ? AND id IN ({marks})", (actor_id, *map(int, ids))).fetchall()
        except _unavailable_errors as e:
            raise self._guard("reading records")(e) from e
        return {row[0]: StoredRecord(*row) for row in rows}

    def count(self, actor_id: str) -> int:
        with self._db.connection() as db:
            return db.execute("SELECT count(*) FROM ltm_records WHERE actor_id = ?", (actor_id,)).fetchone()[0]

    def session_records(self, actor_id: str, session_id: str) -> list[StoredRecord]:
        """Every record of one session, in conversation order (tests and tools)."""
        with self._db.connection() as db:
            rows = db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM ltm_records "
                "WHERE actor_id = ? AND session_id = ? ORDER BY generation, turn, seq", (actor_id, session_id)).fetchall()
        return [StoredRecord(*row) for row in rows]

    def list_records(self, actor_id: str, limit: int, below: int | None = None) -> StoredPage:
        """The actor's records, newest first, ``limit`` at a time; ``below``: continue under that ``actor_seq``."""
        try:
            with self._db.connection() as db:
                rows = db.execute(
                    f"SELECT {_RECORD_COLUMNS}, actor_seq FROM ltm_records WHERE actor_id = ? AND actor_seq < ? "
                    "ORDER BY actor_seq DESC LIMIT ?",
                    (actor_id, 2**62 if below is None else min(below, 2**62), limit + 1)).fetchall()
        except _unavailable_errors as e:
            raise self._guard("listing records")(e) from e
        more = len(rows) > limit
        rows = rows[:limit]
        return StoredPage([StoredRecord(*row[:-1]) for row in rows], rows[-1][-1] if more else None)

    def unembedded(self, limit: int, skip: Collection[str] = ()) -> list[Unembedded]:
        """Records of every actor still without a vector, oldest first (but ``skip``: given up on)."""
        try:
            with self._db.connection() as db:
                rows = db.execute(
                    "SELECT id, actor_id, session_id, turn, speaker, text, token FROM ltm_records "
                    "WHERE length(vector) = 0 "
                    "ORDER BY id LIMIT ?", (limit + len(skip),)).fetchall()
        except _unavailable_errors as e:
            raise self._guard("reading records without vectors")(e) from e
        return [Unembedded(*row) for row in rows if row[6] not in skip][:limit]

    def count_unembedded(self) -> int:
        """How many records of the file still wait for a vector (every actor)."""
        try:
            with self._db.connection() as db:
                return db.execute("SELECT count(*) FROM ltm_records WHERE length(vector) = 0").fetchone()[0]
        except _unavailable_errors as e:
            raise self._guard("counting records without vectors")(e) from e

    # -- writes ------------------------------------------------------------------------------

    def write(self, records: Sequence[MessageRecord],
              vectors: np.ndarray | Sequence[np.ndarray | None] | None = None) -> int:
        """Store the records whose epoch and generation are still current; return how many were stored."""
        return sum(token is not None for token in self.insert(records, vectors))

    def insert(self, records: Sequence[MessageRecord],
               vectors: np.ndarray | Sequence[np.ndarray | None] | None = None) -> list[str | None]:
        """Store the records whose epoch and generation are still current: per record its public id, or None
        (refused: deleted meanwhile, or stored already). A record without a vector (None) gets one later.

        One transaction: the checks and the inserts see the same state, and no
        ``forget`` or ``delete_session`` (of any process on this file) can come in between.
        """
        tokens: list[str | None] = []
        numbered: dict[str, int] = {}  # actor -> its records counter (actor_seq of its newest record)
        touched: set[str] = set()
        try:
            with self._db.write() as db:
                epochs: dict[str, int] = {}
                tombstones: dict[tuple[str, str], tuple[int, float]] = {}
                for i, record in enumerate(records):
                    tokens.append(None)
                    if record.actor_id not in epochs:
                        row = db.execute("SELECT epoch, records FROM ltm_actors WHERE actor_id = ?",
                                         (record.actor_id,)).fetchone()
                        epochs[record.actor_id], numbered[record.actor_id] = row if row else (0, 0)
                    key = (record.actor_id, record.session_id)
                    if key not in tombstones:
                        row = db.execute("SELECT deleted_generation, deleted_at FROM ltm_sessions "
                                         "WHERE actor_id = ? AND session_id = ?", key).fetchone()
                        tombstones[key] = (row[0], row[1]) if row else (-1, 0.0)
                    if record.epoch is not None and record.epoch != epochs[record.actor_id]:
                        continue  # forgotten since the request started
                    if cleared_since(record, *tombstones[key]):
                        continue  # the session was cleared since the turn started
                    vector = None if vectors is None else vectors[i]
                    tokens[-1] = self._insert(db, record, vector, numbered[record.actor_id] + 1)
                    if tokens[-1] is not None:
                        numbered[record.actor_id] += 1
                        touched.add(record.actor_id)
                for actor_id in touched:
                    db.execute("INSERT INTO ltm_actors (actor_id, version, records) VALUES (?, 1, ?) "
                               "ON CONFLICT (actor_id) DO UPDATE SET version = version + 1, records = excluded.records",
                               (actor_id, numbered[actor_id]))
        except _unavailable_errors as e:
            raise self._guard("writing records")(e) from e
        return tokens

    @staticmethod
    def _insert(db: sqlite3.Connection, record: MessageRecord, vector: np.ndarray | None,
                actor_seq: int) -> str | None:
        """The record's row: its public id, None if stored already."""
        token = new_token()
        cursor = db.execute(
            "INSERT OR IGNORE INTO ltm_records (actor_id, session_id, generation, turn, seq, role, speaker, text, "
            "caption, created_at, vector, token, actor_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.actor_id, record.session_id, record.generation, record.turn, record.seq, record.role,
             record.speaker, record.text, record.caption, record.created_at,
             NO_VECTOR if vector is None else np.asarray(vector, "<f4").tobytes(), token, actor_seq))
        return None if cursor.rowcount == 0 else token  # 0: already stored (a retried write)

    def add_vectors(self, vectors: Sequence[tuple[str, np.ndarray]]) -> int:
        """Give records (by public id) their embedding; how many took it. Only a record still there without one
        takes it: a record deleted meanwhile stays deleted (nothing is inserted, and a new record that reuses its
        internal id is not given its vector), one embedded meanwhile keeps its vector."""
        stored = 0
        try:
            with self._db.write() as db:
                counters: dict[str, int] = {}
                for token, vector in vectors:
                    row = db.execute("SELECT id, actor_id FROM ltm_records WHERE token = ? AND length(vector) = 0",
                                     (token,)).fetchone()
                    if row is None:
                        continue
                    rowid, actor_id = row
                    if actor_id not in counters:
                        counters[actor_id] = db.execute("SELECT embedded FROM ltm_actors WHERE actor_id = ?",
                                                        (actor_id,)).fetchone()[0]
                    counters[actor_id] += 1
                    db.execute("UPDATE ltm_records SET vector = ?, vector_seq = ? WHERE id = ?",
                               (np.asarray(vector, "<f4").tobytes(), counters[actor_id], rowid))
                    stored += 1
                for actor_id, embedded in counters.items():
                    db.execute("UPDATE ltm_actors SET version = version + 1, embedded = ? WHERE actor_id = ?",
                               (embedded, actor_id))
        except _unavailable_errors as e:
            raise self._guard("adding vectors")(e) from e
        return stored

    def delete_record(self, actor_id: str, token: str) -> bool:
        """Delete one record of the actor by its public id; False when the actor has none by that id."""
        try:
            with self._db.write() as db:
                removed = self._delete_where(db, "actor_id = ? AND token = ?", (actor_id, token))
                if removed:
                    db.execute("UPDATE ltm_actors SET version = version + 1, deletes = deletes + 1 WHERE actor_id = ?",
                               (actor_id,))
        except _unavailable_errors as e:
            raise self._guard("deleting a record")(e) from e
        return removed > 0

    def _delete_where(self, db: sqlite3.Connection, where: str, args: tuple[object, ...]) -> int:
        ids = [row[0] for row in db.execute(f"SELECT id FROM ltm_records WHERE {where}", args)]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            db.execute(f"DELETE FROM ltm_records WHERE id IN ({marks})", chunk)
        return len(ids)

    def delete_session(self, actor_id: str, session_id: str, generation: int) -> int:
        try:
            with self._db.write() as db:
                removed = self._delete_where(db, "actor_id = ? AND session_id = ? AND generation <= ?",
                                             (actor_id, session_id, generation))
                db.execute("INSERT INTO ltm_sessions (actor_id, session_id, deleted_generation, deleted_at) "
                           "VALUES (?, ?, ?, ?) ON CONFLICT (actor_id, session_id) DO UPDATE SET deleted_generation = "
                           "max(deleted_generation, excluded.deleted_generation), deleted_at = excluded.deleted_at",
                           (actor_id, session_id, generation, time.time()))
                db.execute("INSERT INTO ltm_actors (actor_id, version, deletes) VALUES (?, 1, 1) ON CONFLICT "
                           "(actor_id) DO UPDATE SET version = version + 1, deletes = deletes + 1", (actor_id,))
        except _unavailable_errors as e:
            raise self._guard("deleting a session's records")(e) from e
        return removed

    def forget(self, actor_id: str) -> int:
        try:
            with self._db.write() as db:
                removed = self._delete_where(db, "actor_id = ?", (actor_id,))
                db.execute("INSERT INTO ltm_actors (actor_id, epoch, version, deletes) VALUES (?, 1, 1, 1) "
                           "ON CONFLICT (actor_id) DO UPDATE SET epoch = epoch + 1, version = version + 1, "
                           "deletes = deletes + 1", (actor_id,))
        except _unavailable_errors as e:
            raise self._guard("forgetting the actor")(e) from e
        with self._cache_lock:
            self._cache.pop(actor_id, None)
        return removed

