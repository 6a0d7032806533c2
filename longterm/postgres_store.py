"""Long-term records in PostgreSQL, shared by every replica: the SQLite store's contract on a server.

Tables (``memory/postgres/sql/longterm_001.sql``): ``ltm_records`` (provenance, text, the embedding in a
pgvector ``vector(384)`` column, the words in a ``tsvector``), ``ltm_actors`` (epoch and version per
actor) and ``ltm_sessions`` (tombstones of deleted sessions).

Search is the local store's (``longterm.local``: BM25F + MiniLM fused by ``longterm.scoring``), over the
actor's records held in memory as arrays; this store keeps that copy current across replicas. Each search
reads the actor's ``version`` (one primary-key read); a change loads only the rows added since (``id >``
the last one seen), or the whole actor again after a delete. So a record written on replica A is found
on replica B by B's next search, and a ``forget`` on B is gone from A's next search.

Why not pgvector's HNSW index for the dense half: a search is scoped to one actor, and pgvector 0.6
filters an HNSW scan after it (``ef_search`` candidates from all actors, then ``WHERE actor_id``), so
an actor among many gets few or none of its own records back. The exact dot product over the actor's
cached vectors is both complete and faster (0.3 ms at 10,000 records).

Writes and deletes take the actor's ``ltm_actors`` row lock first: a batch checks the epoch and the
tombstones under it and inserts in the same transaction, so a write that started before a ``forget`` or
``delete_session`` (on any replica) never lands after it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import psycopg

from core.errors import LongTermUnavailable, StoreUnavailable
from longterm.base import MessageRecord
from longterm.index import ActorBuffers, ActorIndex, empty_index
from longterm.sqlite_store import CACHE_ROWS, StoredRecord
from memory.postgres.connection import make_pool, redact, run
from memory.postgres.rows import decode_body, encode_body
from memory.postgres.schema import migrate

logger = logging.getLogger(__name__)

R = TypeVar("R")

# vector_send: pgvector's binary form (int16 dimensions, int16 unused, big-endian float4s), read as bytes
_SELECT = ("SELECT id, session_id, generation, turn, seq, speaker, vector_send(embedding), body, caption, created_at "
           "FROM ltm_records WHERE actor_id = %s")


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form; 9 significant digits keep every float32 exact."""
    return "[" + ",".join(format(float(x), ".9g") for x in np.asarray(vector, np.float32)) + "]"


def vector_bytes(sent: bytes) -> bytes:
    """``vector_send``'s bytes as the little-endian float32 bytes the search arrays hold."""
    return np.frombuffer(sent, ">f4", offset=4).astype("<f4").tobytes()


class PostgresLongTermStore:
    """Long-term records on ``url`` (a libpq URL); the interface of ``SQLiteLongTermStore``."""

    durable = True

    def __init__(self, url: str, *, pool_size: int = 4, pool_timeout: float = 5.0, statement_timeout: float = 30.0,
                 cache_rows: int = CACHE_ROWS) -> None:
        """``statement_timeout``: longer than the session store's: a first search loads a whole actor."""
        self.where = f"postgres {redact(url)}"
        self._pool = make_pool(url, size=pool_size, timeout=pool_timeout, name="longterm",
                               statement_timeout=statement_timeout)
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
        """The actor's records as arrays: from the cache while the actor's version is unchanged (one read)."""
        row = self._run("reading the version", lambda conn: conn.execute(
            "SELECT version, deletes FROM ltm_actors WHERE actor_id = %s", (actor_id,)).fetchone(), retry=True)
        if row is None:
            return empty_index()
        version, deletes = row
        with self._cache_lock:
            buffers = self._cache.get(actor_id)
            if buffers is not None:
                self._cache.move_to_end(actor_id)
        if buffers is not None and buffers.version == version:
            return buffers.snapshot()
        if buffers is not None and buffers.deletes == deletes:
            # only the rows added since; the version read with them, so a write meanwhile is read next time
            version, rows = self._rows(actor_id, buffers.last_id)
            buffers.append(rows, version)
        else:
            with self._load_lock:
                with self._cache_lock:
                    loaded = self._cache.get(actor_id)
                if loaded is not None and loaded.deletes == deletes:  # another search just loaded it
                    return self.actor_index(actor_id)
                version, rows = self._rows(actor_id, None)
                buffers = ActorBuffers(version, deletes, capacity=len(rows) + len(rows) // 8 + 64)
                buffers.append(rows, version)
        self._keep(actor_id, buffers)
        return buffers.snapshot()

    def _rows(self, actor_id: str, after: int | None) -> tuple[int, list[tuple]]:
        """(the actor's version, its records after id ``after``) read in one snapshot."""

        def read(conn: psycopg.Connection) -> tuple[int, list[tuple]]:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                version = conn.execute("SELECT version FROM ltm_actors WHERE actor_id = %s", (actor_id,)).fetchone()
                query = _SELECT + (" AND id > %s ORDER BY id" if after is not None else " ORDER BY id")
                found = conn.execute(query, (actor_id, after) if after is not None else (actor_id,)).fetchall()
            return (version[0] if version else 0), found

        version, found = self._run("loading the records", read, retry=True)
        return version, [(rid, session, generation, turn, seq, speaker, vector_bytes(sent), decode_body(body),
                          decode_body(caption), created_at)
                         for rid, session, generation, turn, seq, speaker, sent, body, caption, created_at in found]

    def _keep(self, actor_id: str, buffers: ActorBuffers) -> None:
        with self._cache_lock:
            self._cache[actor_id] = buffers
            self._cache.move_to_end(actor_id)
            total = sum(b.size for b in self._cache.values())
            while total > self._cache_rows and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                total -= dropped.size

    def keyword_search(self, actor_id: str, match: str, limit: int,
                       weights: Sequence[float]) -> list[tuple[int, float]]:
        """(record id, rank) of the actor's records matching ``match`` (FTS5 syntax: terms OR-ed) by Postgres
        full-text search over text and caption, best first: the benchmark's keyword baseline."""
        terms = [t.strip('"') for t in match.replace("(", " ").replace(")", " ").split() if t.upper() != "OR"]
        if not terms:
            return []
        query = " | ".join(f"'{t}'" for t in terms if "'" not in t)
        rows = self._run("the keyword search", lambda conn: conn.execute(
            "SELECT id, ts_rank_cd(words, q) AS r FROM ltm_records, to_tsquery('english', %s) q "
            "WHERE actor_id = %s AND words @@ q ORDER BY r DESC, id LIMIT %s", (query, actor_id, limit)).fetchall(),
            retry=True)
        return [(rid, float(rank)) for rid, rank in rows]

    def fetch(self, actor_id: str, ids: Sequence[int]) -> dict[int, StoredRecord]:
        """The records of ``ids`` that belong to the actor (a record deleted meanwhile is missing)."""
        if not len(ids):
            return {}
        rows = self._run("reading records", lambda conn: conn.execute(
            "SELECT id, session_id, turn, role, body, created_at FROM ltm_records "
            "WHERE actor_id = %s AND id = ANY(%s)", (actor_id, [int(i) for i in ids])).fetchall(), retry=True)
        return {row[0]: StoredRecord(row[0], row[1], row[2], row[3], decode_body(row[4]), row[5]) for row in rows}

    def count(self, actor_id: str) -> int:
        return self._run("counting records", lambda conn: conn.execute(
            "SELECT count(*) FROM ltm_records WHERE actor_id = %s", (actor_id,)).fetchone()[0], retry=True)

    def session_records(self, actor_id: str, session_id: str) -> list[StoredRecord]:
        """Every record of one session, in conversation order (tests and tools)."""
        rows = self._run("reading records", lambda conn: conn.execute(
            "SELECT id, session_id, turn, role, body, created_at FROM ltm_records "
            "WHERE actor_id = %s AND session_id = %s ORDER BY generation, turn, seq",
            (actor_id, session_id)).fetchall(), retry=True)
        return [StoredRecord(r[0], r[1], r[2], r[3], decode_body(r[4]), r[5]) for r in rows]

    # -- writes ------------------------------------------------------------------------------

    def write(self, records: Sequence[MessageRecord], vectors: np.ndarray) -> int:
        """Store the records whose epoch and generation are still current; return how many were stored.

        One transaction, under the actors' row locks (taken in actor order: two batches never deadlock),
        so no ``forget`` or ``delete_session`` of any replica comes between the checks and the inserts.
        """
        if not len(records):
            return 0
        actors = sorted({r.actor_id for r in records})
        pairs = sorted({(r.actor_id, r.session_id) for r in records})

        def write(conn: psycopg.Connection) -> int:
            with conn.transaction():
                conn.execute("INSERT INTO ltm_actors (actor_id) SELECT unnest(%s::text[]) ORDER BY 1 "
                              "ON CONFLICT (actor_id) DO NOTHING", (actors,))
                epochs = dict(conn.execute(
                    "SELECT actor_id, epoch FROM ltm_actors WHERE actor_id = ANY(%s) ORDER BY actor_id FOR UPDATE",
                    (actors,)).fetchall())
                tombstones = {(a, s): g for a, s, g in conn.execute(
                    "SELECT t.actor_id, t.session_id, t.deleted_generation FROM ltm_sessions t "
                    "JOIN unnest(%s::text[], %s::text[]) AS p (actor_id, session_id) "
                    "ON p.actor_id = t.actor_id AND p.session_id = t.session_id",
                    ([a for a, _ in pairs], [s for _, s in pairs])).fetchall()}
                kept = [(r, v) for r, v in zip(records, vectors)
                        if (r.epoch is None or r.epoch == epochs[r.actor_id])  # else forgotten since it started
                        and r.generation > tombstones.get((r.actor_id, r.session_id), -1)]  # else cleared since
                if not kept:
                    return 0
                columns = list(zip(*[(r.actor_id, r.session_id, r.generation, r.turn, r.seq, r.role, r.speaker,
                                      encode_body(r.text), encode_body(r.caption), r.created_at, vector_literal(v))
                                     for r, v in kept]))
                stored = conn.execute(
                    "INSERT INTO ltm_records (actor_id, session_id, generation, turn, seq, role, speaker, body, "
                    "caption, created_at, embedding) SELECT a, s, g, t, q, r, sp, b, c, at, e::vector FROM unnest("
                    "%s::text[], %s::text[], %s::bigint[], %s::integer[], %s::integer[], %s::text[], %s::text[], "
                    "%s::text[], %s::text[], %s::double precision[], %s::text[]) AS u (a, s, g, t, q, r, sp, b, c, at, e) "
                    "ON CONFLICT (actor_id, session_id, generation, turn, seq) DO NOTHING RETURNING actor_id",
                    [list(c) for c in columns]).fetchall()
                touched = sorted({a for (a,) in stored})
                if touched:
                    conn.execute("UPDATE ltm_actors SET version = version + 1 WHERE actor_id = ANY(%s)", (touched,))
                return len(stored)

        return self._run("writing records", write, retry=False)

    def delete_session(self, actor_id: str, session_id: str, generation: int) -> int:
        def delete(conn: psycopg.Connection) -> int:
            with conn.transaction():
                conn.execute("INSERT INTO ltm_actors (actor_id, version, deletes) VALUES (%s, 1, 1) "
                              "ON CONFLICT (actor_id) DO UPDATE SET version = ltm_actors.version + 1, "
                              "deletes = ltm_actors.deletes + 1", (actor_id,))
                removed = conn.execute("DELETE FROM ltm_records WHERE actor_id = %s AND session_id = %s "
                                       "AND generation <= %s", (actor_id, session_id, generation)).rowcount
                conn.execute("INSERT INTO ltm_sessions (actor_id, session_id, deleted_generation) VALUES (%s, %s, %s) "
                             "ON CONFLICT (actor_id, session_id) DO UPDATE SET deleted_generation = "
                             "greatest(ltm_sessions.deleted_generation, excluded.deleted_generation)",
                             (actor_id, session_id, generation))
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
