"""Long-term records in PostgreSQL, shared by every replica: the SQLite store's contract on a server.

Tables (``memory/postgres/sql/longterm_001.sql``): ``ltm_records`` (provenance, text, a random public
``token``, the actor's own numbering ``actor_seq``, the embedding in a pgvector ``vector(384)`` column, NULL
until the background writer adds it, and ``vector_seq``, when it did), ``ltm_actors`` (epoch, version,
deletes and the record counter per actor), ``ltm_embedded`` (per actor the clock of vectors added) and
``ltm_sessions`` (tombstones of deleted sessions).

The text of a record is written on the request path (``insert``: committed, and found by its keywords,
before the reply is acknowledged); its vector later (``add_vectors``: only to a row still there without
one, so a delete stays deleted). The background writer's work list is the records whose vector is NULL (a
partial index), so a restart, or any other replica, embeds what a process left behind.

Search is the local store's (``longterm.local``: BM25F + MiniLM fused by ``longterm.scoring``), over the
actor's records held in memory as arrays; this store keeps that copy current across replicas. Each search
reads the actor's clocks (``version``, ``deletes``, ``embedded``: one indexed read). A change loads only the
rows added since (``id >`` the last one seen) and the vectors added since (``vector_seq >`` the last one
seen), in one snapshot; after a delete, the whole actor again. So a record written on replica A is found on
replica B by B's next search, and a ``forget`` on B is gone from A's next search.

Why not pgvector's HNSW index for the dense half: a search is scoped to one actor, and pgvector 0.6
filters an HNSW scan after it (``ef_search`` candidates from all actors, then ``WHERE actor_id``), so
an actor among many gets few or none of its own records back. The exact dot product over the actor's
cached vectors is both complete and faster (0.3 ms at 10,000 records).

Locks: inserts and deletes take the actor's ``ltm_actors`` row first (``FOR UPDATE``, in actor order): an
insert checks the epoch and the tombstones under it, so a write that started before a ``forget`` or
``delete_session`` (on any replica) never lands after it, and ids and ``actor_seq`` grow in commit order
per actor (what the incremental read relies on). ``add_vectors`` takes the actor's ``ltm_embedded`` row
instead: embedding never holds up a request's insert, and ``vector_seq`` grows in commit order too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

import numpy as np
import psycopg

from core.errors import LongTermUnavailable, StoreUnavailable
from longterm.base import MessageRecord
from longterm.index import ActorBuffers, ActorIndex, empty_index, keep_bounded
from longterm.sqlite_schema import new_token
from longterm.sqlite_store import CACHE_ROWS, StoredPage, StoredRecord, Unembedded
from memory.postgres.connection import make_pool, redact, run
from memory.postgres.rows import decode_body, encode_body
from memory.postgres.schema import migrate

logger = logging.getLogger(__name__)

R = TypeVar("R")

# vector_send: pgvector's binary form (int16 dimensions, int16 unused, big-endian float4s), read as bytes
_SELECT = ("SELECT id, session_id, generation, turn, seq, speaker, vector_send(embedding), body, caption, created_at "
           "FROM ltm_records WHERE actor_id = %s")
_RECORD_COLUMNS = "id, session_id, turn, role, body, created_at, token"
_CLOCKS = ("SELECT a.version, a.deletes, coalesce(e.embedded, 0) FROM ltm_actors a "
           "LEFT JOIN ltm_embedded e ON e.actor_id = a.actor_id WHERE a.actor_id = %s")
#: above every actor_seq (a cursor may name any 19-digit number; bigint stops at 2**63 - 1)
_NO_BELOW = 2**62


def vector_literal(vector: np.ndarray | None) -> str | None:
    """pgvector's text form; 9 significant digits keep every float32 exact. None: no vector yet (NULL)."""
    if vector is None:
        return None
    return "[" + ",".join(format(float(x), ".9g") for x in np.asarray(vector, np.float32)) + "]"


def vector_bytes(sent: bytes | None) -> bytes:
    """``vector_send``'s bytes as the little-endian float32 bytes the search arrays hold (empty: none yet)."""
    if sent is None:
        return b""
    return np.frombuffer(sent, ">f4", offset=4).astype("<f4").tobytes()


def _stored(row: tuple) -> StoredRecord:
    return StoredRecord(row[0], row[1], row[2], row[3], decode_body(row[4]), row[5], row[6])


class PostgresLongTermStore:
    """Long-term records on ``url`` (a libpq URL); the interface of ``SQLiteLongTermStore``."""

    durable = True

    def __init__(self, url: str, *, pool_size: int = 4, pool_timeout: float = 5.0, statement_timeout: float = 30.0,
                 cache_rows: int = CACHE_ROWS, configure: Callable[[psycopg.Connection], None] | None = None) -> None:
        """``statement_timeout``: longer than the session store's: a first search loads a whole actor.
        ``configure``: called with each new connection (the tests count round trips with it)."""
        self.where = f"postgres {redact(url)}"
        self._pool = make_pool(url, size=pool_size, timeout=pool_timeout, name="longterm",
                               statement_timeout=statement_timeout, configure=configure)
        self._cache: OrderedDict[str, ActorBuffers] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._load_lock = threading.RLock()
        self._cache_rows = cache_rows
        self._ready = False
        self._ready_lock = threading.Lock()
        try:
            self._ensure_schema()
        except LongTermUnavailable as e:
            logger.warning("%s; long-term memory answers 503 until it is reachable", e.message)

    def close(self) -> None:
        self._pool.close()
        with self._cache_lock:
            self._cache.clear()

    # -- plumbing ------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                self._run("creating the schema", lambda conn: migrate(conn, "longterm"), retry=True, ready=False)
                self._ready = True

    def _run(self, what: str, work: Callable[[psycopg.Connection], R], *, retry: bool, ready: bool = True) -> R:
        if ready:
            self._ensure_schema()
        try:
            return run(self._pool, "postgres", work, retry=retry)
        except StoreUnavailable as e:
            raise LongTermUnavailable(f"long-term store {self.where}: {what} failed: "
                                      f"{e.message.split(': ', 1)[-1]}") from e

    # -- reads ---------------------------------------------------------------------------------

    def epoch(self, actor_id: str) -> int:
        row = self._run("reading the epoch", lambda conn: conn.execute(
            "SELECT epoch FROM ltm_actors WHERE actor_id = %s", (actor_id,)).fetchone(), retry=True)
        return row[0] if row else 0

    def actor_index(self, actor_id: str) -> ActorIndex:
        """The actor's records as arrays: from the cache while the actor's clocks are unchanged (one read)."""
        row = self._run("reading the version", lambda conn: conn.execute(_CLOCKS, (actor_id,)).fetchone(),
                        retry=True)
        if row is None:
            return empty_index()
        version, deletes, embedded = row
        with self._cache_lock:
            buffers = self._cache.get(actor_id)
            if buffers is not None:
                self._cache.move_to_end(actor_id)
        if buffers is not None and buffers.version == version and buffers.embedded == embedded:
            return buffers.snapshot()
        if buffers is not None and buffers.deletes == deletes:
            buffers = self._read(actor_id, buffers)  # only what was added since (or all of it after a delete)
        else:
            with self._load_lock:
                with self._cache_lock:
                    loaded = self._cache.get(actor_id)
                if loaded is not None and loaded.deletes == deletes:  # another search just loaded it
                    return self.actor_index(actor_id)
                buffers = self._read(actor_id, None)
                self._keep(actor_id, buffers)
        self._keep(actor_id, buffers)
        return buffers.snapshot()

    def _read(self, actor_id: str, buffers: ActorBuffers | None) -> ActorBuffers:
        """``buffers`` brought up to date (the rows and vectors added since), or the actor loaded whole (None, or
        a delete since ``buffers``): the clocks, rows and vectors read in one snapshot."""

        def read(conn: psycopg.Connection) -> tuple[tuple[int, int, int], list[tuple], list[tuple] | None]:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                clocks = conn.execute(_CLOCKS, (actor_id,)).fetchone() or (0, 0, 0)
                if buffers is None or buffers.deletes != clocks[1]:
                    return clocks, conn.execute(_SELECT + " ORDER BY id", (actor_id,)).fetchall(), None
                rows = conn.execute(_SELECT + " AND id > %s ORDER BY id", (actor_id, buffers.last_id)).fetchall()
                vectors: list[tuple] = []
                if clocks[2] != buffers.embedded:
                    vectors = conn.execute("SELECT id, vector_send(embedding) FROM ltm_records WHERE actor_id = %s "
                                           "AND vector_seq > %s", (actor_id, buffers.embedded)).fetchall()
                return clocks, rows, vectors

        (version, deletes, embedded), found, vectors = self._run("loading the records", read, retry=True)
        rows = [(rid, session, generation, turn, seq, speaker, vector_bytes(sent), decode_body(body),
                 decode_body(caption), created_at)
                for rid, session, generation, turn, seq, speaker, sent, body, caption, created_at in found]
        if vectors is None:  # loaded whole
            buffers = ActorBuffers(version, deletes, capacity=len(rows) + len(rows) // 8 + 64)
            buffers.embedded = embedded
            buffers.append(rows, version)
            return buffers
        assert buffers is not None
        buffers.append(rows, version)
        buffers.add_vectors(((rid, vector_bytes(sent)) for rid, sent in vectors), embedded)
        return buffers

    def _keep(self, actor_id: str, buffers: ActorBuffers) -> None:
        with self._cache_lock:
            keep_bounded(self._cache, actor_id, buffers, self._cache_rows)

    def fetch(self, actor_id: str, ids: Sequence[int]) -> dict[int, StoredRecord]:
        """The records of ``ids`` that belong to the actor (a record deleted meanwhile is missing)."""
        if not len(ids):
            return {}
        rows = self._run("reading records", lambda conn: conn.execute(
            f"SELECT {_RECORD_COLUMNS} FROM ltm_records WHERE actor_id = %s AND id = ANY(%s)",
            (actor_id, [int(i) for i in ids])).fetchall(), retry=True)
        return {row[0]: _stored(row) for row in rows}

    def count(self, actor_id: str) -> int:
        return self._run("counting records", lambda conn: conn.execute(
            "SELECT count(*) FROM ltm_records WHERE actor_id = %s", (actor_id,)).fetchone()[0], retry=True)

    def session_records(self, actor_id: str, session_id: str) -> list[StoredRecord]:
        """Every record of one session, in conversation order (tests and tools)."""
        rows = self._run("reading records", lambda conn: conn.execute(
            f"SELECT {_RECORD_COLUMNS} FROM ltm_records WHERE actor_id = %s AND session_id = %s "
            "ORDER BY generation, turn, seq", (actor_id, session_id)).fetchall(), retry=True)
        return [_stored(row) for row in rows]

    def list_records(self, actor_id: str, limit: int, below: int | None = None) -> StoredPage:
        """The actor's records, newest first, ``limit`` at a time; ``below``: continue under that ``actor_seq``."""
        rows = self._run("listing records", lambda conn: conn.execute(
            f"SELECT {_RECORD_COLUMNS}, actor_seq FROM ltm_records WHERE actor_id = %s AND actor_seq < %s "
            "ORDER BY actor_seq DESC LIMIT %s",
            (actor_id, _NO_BELOW if below is None else min(below, _NO_BELOW), limit + 1)).fetchall(), retry=True)
        more = len(rows) > limit
        rows = rows[:limit]
        return StoredPage([_stored(row) for row in rows], rows[-1][-1] if more else None)

    def unembedded(self, limit: int, skip: Collection[str] = ()) -> list[Unembedded]:
        """Records of every actor still without a vector, oldest first (but ``skip``: given up on)."""
        rows = self._run("reading records without vectors", lambda conn: conn.execute(
            "SELECT id, actor_id, session_id, turn, speaker, body, token FROM ltm_records WHERE embedding IS NULL "
            "AND NOT (token = ANY(%s)) ORDER BY id LIMIT %s", (list(skip), limit)).fetchall(), retry=True)
        return [Unembedded(r[0], r[1], r[2], r[3], r[4], decode_body(r[5]), r[6]) for r in rows]

    def count_unembedded(self) -> int:
        """How many records of the database still wait for a vector (every actor)."""
        return self._run("counting records without vectors", lambda conn: conn.execute(
            "SELECT count(*) FROM ltm_records WHERE embedding IS NULL").fetchone()[0], retry=True)

    # -- writes ------------------------------------------------------------------------------

    def write(self, records: Sequence[MessageRecord],
              vectors: np.ndarray | Sequence[np.ndarray | None] | None = None) -> int:
        """Store the records whose epoch and generation are still current; return how many were stored."""
        return sum(token is not None for token in self.insert(records, vectors))

    def insert(self, records: Sequence[MessageRecord],
               vectors: np.ndarray | Sequence[np.ndarray | None] | None = None) -> list[str | None]:
        """Store the records whose epoch and generation are still current: per record its public id, or None
        (refused: deleted meanwhile, or stored already). A record without a vector (None) gets one later.

        One transaction, under the actors' row locks (taken in actor order: two inserts never deadlock), so
        no ``forget`` or ``delete_session`` of any replica comes between the checks and the inserts. Safe to
        run twice (the unique key): a retry after a cut connection stores nothing twice. A record twice in
        one batch is stored once.
        """
        if not len(records):
            return []
        vectors = [None] * len(records) if vectors is None else vectors
        tokens = [new_token() for _ in records]
        columns = [list(c) for c in zip(*[
            (token, r.actor_id, r.session_id, r.generation, r.turn, r.seq, r.role, r.speaker, encode_body(r.text),
             encode_body(r.caption), r.created_at, vector_literal(vector), r.epoch)
            for token, r, vector in zip(tokens, records, vectors)])]
        # one statement (autocommit: its own transaction), one round trip: ltm_insert in longterm_001.sql
        stored = self._run("writing records", lambda conn: {token for (token,) in conn.execute(
            "SELECT * FROM ltm_insert(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::integer[], "
            "%s::integer[], %s::text[], %s::text[], %s::text[], %s::text[], %s::double precision[], %s::text[], "
            "%s::bigint[])", columns).fetchall()}, retry=True)
        return [token if token in stored else None for token in tokens]

    def add_vectors(self, vectors: Sequence[tuple[str, np.ndarray]]) -> int:
        """Give records (by public id) their embedding; how many took it. Only a record still there without one
        takes it: a record deleted meanwhile stays deleted, one embedded meanwhile (by another replica's
        writer) keeps its vector.

        Under the actors' ``ltm_embedded`` rows (never the ``ltm_actors`` row an insert waits for): each vector
        gets the next ``vector_seq`` of its actor, in commit order."""
        if not vectors:
            return 0
        by_token = {token: vector for token, vector in vectors}

        def add(conn: psycopg.Connection) -> int:
            with conn.transaction():
                waiting = conn.execute("SELECT token, actor_id FROM ltm_records WHERE token = ANY(%s) "
                                       "AND embedding IS NULL ORDER BY id", (list(by_token),)).fetchall()
                if not waiting:
                    return 0
                actors = sorted({a for _, a in waiting})
                clock = dict(conn.execute(
                    "INSERT INTO ltm_embedded AS e (actor_id) SELECT unnest(%s::text[]) ORDER BY 1 "
                    "ON CONFLICT (actor_id) DO UPDATE SET actor_id = e.actor_id RETURNING actor_id, embedded",
                    (actors,)).fetchall())
                sequenced = []
                for token, actor_id in waiting:
                    clock[actor_id] += 1
                    sequenced.append((token, vector_literal(by_token[token]), clock[actor_id]))
                # a row deleted since the first read is not there to update; one embedded since keeps its vector
                stored = conn.execute(
                    "UPDATE ltm_records r SET embedding = u.e::vector, vector_seq = u.n "
                    "FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS u (k, e, n) "
                    "WHERE r.token = u.k AND r.embedding IS NULL",
                    [list(c) for c in zip(*sequenced)]).rowcount
                conn.execute("UPDATE ltm_embedded e SET embedded = u.n FROM unnest(%s::text[], %s::bigint[]) "
                             "AS u (actor_id, n) WHERE e.actor_id = u.actor_id", (actors, [clock[a] for a in actors]))
                return stored

        return self._run("adding vectors", add, retry=True)

    def delete_record(self, actor_id: str, token: str) -> bool:
        """Delete one record of the actor by its public id; False when the actor has none by that id."""
        if "\x00" in token:  # no token holds one (and PostgreSQL text cannot)
            return False

        def delete(conn: psycopg.Connection) -> bool:
            with conn.transaction():
                # the actor's row first, as every writer takes it: no deadlock with a forget of the same actor
                if conn.execute("SELECT 1 FROM ltm_actors WHERE actor_id = %s FOR UPDATE", (actor_id,)).fetchone() \
                        is None:
                    return False
                removed = conn.execute("DELETE FROM ltm_records WHERE actor_id = %s AND token = %s",
                                       (actor_id, token)).rowcount
                if removed:
                    conn.execute("UPDATE ltm_actors SET version = version + 1, deletes = deletes + 1 "
                                 "WHERE actor_id = %s", (actor_id,))
                return removed > 0

        return self._run("deleting a record", delete, retry=False)

    def delete_session(self, actor_id: str, session_id: str, generation: int) -> int:
        def delete(conn: psycopg.Connection) -> int:
            with conn.transaction():
                conn.execute("INSERT INTO ltm_actors (actor_id, version, deletes) VALUES (%s, 1, 1) "
                             "ON CONFLICT (actor_id) DO UPDATE SET version = ltm_actors.version + 1, "
                             "deletes = ltm_actors.deletes + 1", (actor_id,))
                removed = conn.execute("DELETE FROM ltm_records WHERE actor_id = %s AND session_id = %s "
                                       "AND generation <= %s", (actor_id, session_id, generation)).rowcount
                conn.execute("INSERT INTO ltm_sessions (actor_id, session_id, deleted_generation, deleted_at) "
                             "VALUES (%s, %s, %s, %s) ON CONFLICT (actor_id, session_id) DO UPDATE SET "
                             "deleted_generation = greatest(ltm_sessions.deleted_generation, "
                             "excluded.deleted_generation), deleted_at = excluded.deleted_at",
                             (actor_id, session_id, generation, time.time()))
            return removed

        return self._run("deleting a session's records", delete, retry=False)

    def forget(self, actor_id: str) -> int:
        def forget(conn: psycopg.Connection) -> int:
            with conn.transaction():
                conn.execute("INSERT INTO ltm_actors (actor_id, epoch, version, deletes) VALUES (%s, 1, 1, 1) "
                             "ON CONFLICT (actor_id) DO UPDATE SET epoch = ltm_actors.epoch + 1, "
                             "version = ltm_actors.version + 1, deletes = ltm_actors.deletes + 1", (actor_id,))
                return conn.execute("DELETE FROM ltm_records WHERE actor_id = %s", (actor_id,)).rowcount

        removed = self._run("forgetting the actor", forget, retry=False)
        with self._cache_lock:
            self._cache.pop(actor_id, None)
        return removed
