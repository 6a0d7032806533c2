"""PostgreSQL session store: the SQLite store's layout, on a server every replica shares.

A plain turn costs two round trips: ``load_window`` is one call of ``memory_load_window`` (the session's
row, then its last k turns by primary key; with ``SESSION_TTL`` it also restarts the expiry) and
``add_turns`` one call of ``memory_add_turns`` (lock the session row, check the generation and the
idempotency key, insert the messages, move the counters on: one transaction). The functions are in
``sql/001_sessions.sql``; the connections autocommit, so each call is its own transaction.

Concurrent writers on one session, in one process or on many replicas, queue on the session row's lock:
their counts are distinct and gap-free. A deleted session keeps its row as a tombstone with the generation
moved on, and every conditional write checks the generation under that lock, so a clear wins over a
turn or a rolling summary begun before it, on any replica.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import psycopg
from bedrock_agentcore.memory.constants import ConversationalMessage

from core.errors import AlreadyStored, SessionChanged, StoreUnavailable
from memory.base import (
    HistoryPage, SessionInfo, SessionPage, SessionStore, StoredEvent, StoredReply, Summary, Turn, Window,
    check_idempotency_key, check_messages, clip_first_message, decode_cursor, generation_retention, history_bounds,
    history_page, page_sessions, request_retention,
)
from memory.expiry import DEFAULT_TURN_GRACE
from memory.postgres import rows
from memory.postgres.connection import make_pool, run
from memory.postgres.schema import migrate

logger = logging.getLogger(__name__)

R = TypeVar("R")

_ADD_TURNS = "SELECT * FROM memory_add_turns(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
_LOAD_WINDOW = "SELECT * FROM memory_load_window(%s, %s, %s, %s, %s)"
_EVENTS = (
    "SELECT m.event_no, m.created_at, m.role, m.body FROM memory_sessions s "
    "JOIN memory_messages m ON m.session_pk = s.pk "
    "WHERE s.actor_id = %s AND s.session_id = %s AND s.updated_at >= %s ORDER BY m.turn, m.seq"
)
_FIND_REQUEST = (
    "SELECT r.message_count, m.role, m.body FROM memory_sessions s "
    "JOIN memory_requests r ON r.session_pk = s.pk AND r.key = %s AND r.stored_at >= %s "
    "LEFT JOIN memory_messages m ON m.session_pk = s.pk AND m.turn BETWEEN r.first_turn AND r.last_turn "
    "AND m.event_no = r.event_no "
    "WHERE s.actor_id = %s AND s.session_id = %s AND s.updated_at >= %s ORDER BY m.turn, m.seq"
)
_SUMMARY = (
    "SELECT summary_text, summary_through FROM memory_sessions "
    "WHERE actor_id = %s AND session_id = %s AND updated_at >= %s AND summary_text IS NOT NULL"
)
# one range of memory_sessions_actor_written, read backwards; the first USER message by primary key
_LIST = (
    "SELECT s.session_id, s.user_messages, s.written_at, (SELECT m.body FROM memory_messages m "
    "WHERE m.session_pk = s.pk AND m.role = 'USER' ORDER BY m.turn, m.seq LIMIT 1) "
    "FROM memory_sessions s WHERE s.actor_id = %(actor)s AND s.written_at IS NOT NULL AND s.messages > 0 "
    "AND s.updated_at >= %(cutoff)s {after} ORDER BY s.written_at DESC, s.session_id DESC LIMIT %(n)s"
)
_AFTER = "AND (s.written_at, s.session_id) < (%(at)s, %(id)s)"
# the session's counters and the page's turns in one statement (one snapshot)
_HISTORY = (
    "WITH s AS (SELECT pk, turns, user_messages FROM memory_sessions WHERE actor_id = %(actor)s "
    "AND session_id = %(session)s AND updated_at >= %(cutoff)s), "
    "bounds AS (SELECT pk, turns, user_messages, "
    "LEAST(turns, COALESCE(%(before)s::bigint - 1 + (turns - user_messages), turns)) AS hi FROM s) "
    "SELECT b.turns, b.user_messages, m.turn, m.role, m.body, m.created_at FROM bounds b "
    "LEFT JOIN memory_messages m ON m.session_pk = b.pk AND m.turn BETWEEN GREATEST(1, b.hi - %(limit)s + 1) "
    "AND b.hi ORDER BY m.turn, m.seq"
)


class PostgresStore(SessionStore):
    name = "postgres"

    def __init__(self, url: str, *, ttl: int | None = None, pool_size: int = 10, pool_timeout: float = 5.0,
                 statement_timeout: float = 10.0, turn_grace: float = DEFAULT_TURN_GRACE,
                 configure: Callable[[psycopg.Connection], None] | None = None) -> None:
        """Open a pool on ``url`` (a libpq URL) and bring the schema to this release's version.

        ``pool_timeout``: how long a call waits for a free connection before its 503; ``statement_timeout``:
        how long a statement may run or wait on a lock before its 503 (0: the server's); ``turn_grace``: the
        longest a turn takes from its ``load_window`` to its write (``memory.expiry``). ``configure``: run on
        each new connection (session settings, or tracing the protocol as the round-trip count does).

        When the database does not answer at start-up the server still starts: requests answer 503 until
        it does, and the schema is migrated by the first request that reaches it.
        """
        self._ttl = ttl
        self._turn_grace = turn_grace
        self._pool = make_pool(url, size=pool_size, timeout=pool_timeout, name="sessions",
                               statement_timeout=statement_timeout, configure=configure)
        self._ready = False
        self._ready_lock = threading.Lock()
        try:
            self._ensure_schema()
        except StoreUnavailable as e:
            logger.warning("%s; requests answer 503 until it is reachable", e.message)

    def close(self) -> None:
        self._pool.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        """Migrate once per store object (at start-up, or at the first request after an outage)."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            run(self._pool, self.name, lambda conn: migrate(conn, "sessions"), retry=True)
            if self._ttl is not None:
                self.purge_expired()
            self._ready = True

    def _run(self, work: Callable[[psycopg.Connection], R], *, retry: bool) -> R:
        self._ensure_schema()
        return run(self._pool, self.name, work, retry=retry)

    def _cutoff(self) -> float:
        """Sessions last active before this instant are expired (-inf without a TTL)."""
        return time.time() - self._ttl if self._ttl is not None else float("-inf")

    # -- writes --------------------------------------------------------------------------------

    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage], *,
                  generation: int | None = None, idempotency_key: str | None = None) -> int:
        check_messages(messages)
        check_idempotency_key(idempotency_key)
        now = time.time()
        roles, bodies = rows.encode_messages(messages)
        params = (actor_id, session_id, roles, bodies, generation, idempotency_key, now, self._cutoff(),
                  now - request_retention(self._ttl))
        result = self._run(lambda conn: conn.execute(_ADD_TURNS, params).fetchall(), retry=False)
        outcome = result[0][0]
        if outcome == "changed":
            raise SessionChanged()
        if outcome == "duplicate":
            stored = rows.stored_reply(result)
            raise AlreadyStored(stored.message_count, stored.reply)
        return result[0][1]

    def delete_session(self, actor_id: str, session_id: str) -> int:
        params = (actor_id, session_id, time.time(), self._cutoff())
        return self._run(lambda conn: conn.execute("SELECT memory_delete_session(%s, %s, %s, %s)",
                                                   params).fetchone()[0], retry=False)

    def put_summary(self, actor_id: str, session_id: str, summary: Summary, *, generation: int | None = None) -> bool:
        params = (actor_id, session_id, rows.encode_body(summary.text), summary.through_turn, generation,
                  time.time(), self._cutoff())
        return self._run(lambda conn: conn.execute("SELECT memory_put_summary(%s, %s, %s, %s, %s, %s, %s)",
                                                   params).fetchone()[0], retry=False)

    def purge_expired(self) -> int:
        """Empty every session not active within the TTL (tombstones stay ``generation_retention``); return how many."""
        if self._ttl is None:
            return 0
        now = time.time()
        params = (now - self._ttl, now - generation_retention(self._ttl))
        purged = run(self._pool, self.name, lambda conn: conn.execute(
            "SELECT memory_purge_expired(%s, %s)", params).fetchone()[0], retry=False)
        if purged:
            logger.info("store=<postgres> | purged %d expired sessions", purged)
        return purged

    # -- reads ---------------------------------------------------------------------------------

    def load_window(self, actor_id: str, session_id: str, k: int) -> Window:
        """One call, the rolling summary included (with a TTL it also holds the session for the turn)."""
        return self._window(actor_id, session_id, k, touch=self._ttl is not None)

    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        return self._window(actor_id, session_id, k, touch=False).turns

    def _window(self, actor_id: str, session_id: str, k: int, *, touch: bool) -> Window:
        hold = None
        if touch:  # the turn holds the session max(TTL, turn grace) from now: its TTL clock moves to that,
            # and it counts among the turns holding the session until its own add_turns ends its hold
            assert self._ttl is not None
            hold = time.time() + max(self._ttl, self._turn_grace) - self._ttl
        params = (actor_id, session_id, k, self._cutoff(), hold)
        return rows.window_from_rows(self._run(lambda conn: conn.execute(_LOAD_WINDOW, params).fetchall(),
                                               retry=True))

    def find_request(self, actor_id: str, session_id: str, key: str) -> StoredReply | None:
        params = (key, time.time() - request_retention(self._ttl), actor_id, session_id, self._cutoff())
        found = self._run(lambda conn: conn.execute(_FIND_REQUEST, params).fetchall(), retry=True)
        if not found:
            return None
        return rows.stored_reply([(None, count, role, body) for count, role, body in found])

    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        params = (actor_id, session_id, self._cutoff())
        return rows.events_from_rows(self._run(lambda conn: conn.execute(_EVENTS, params).fetchall(), retry=True))

    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        params = (actor_id, session_id, self._cutoff())
        row = self._run(lambda conn: conn.execute(_SUMMARY, params).fetchone(), retry=True)
        return Summary(rows.decode_body(row[0]), row[1]) if row else None

    def list_sessions(self, actor_id: str, limit: int, cursor: str | None = None) -> SessionPage:
        position = decode_cursor(cursor) if cursor is not None else None
        query = _LIST.format(after=_AFTER if position else "")
        params = {"actor": actor_id, "cutoff": self._cutoff(), "n": limit + 1,
                  "at": position[0] if position else None, "id": position[1] if position else None}
        found = self._run(lambda conn: conn.execute(query, params).fetchall(), retry=True)
        infos = [SessionInfo(session_id, count, written_at,
                             clip_first_message(rows.decode_body(first) if isinstance(first, str) else ""))
                 for session_id, count, written_at, first in found]
        return page_sessions(infos, limit)

    def get_history(self, actor_id: str, session_id: str, limit: int, before: int | None = None) -> HistoryPage:
        """One statement: the session's counters and the page's turns (a range of the primary key)."""
        params = {"actor": actor_id, "session": session_id, "cutoff": self._cutoff(), "before": before,
                  "limit": limit}
        found = self._run(lambda conn: conn.execute(_HISTORY, params).fetchall(), retry=True)
        if not found or found[0][0] == 0:
            return HistoryPage([], None)
        total, users = found[0][0], found[0][1]
        lead = total - users
        lo, hi = history_bounds(total, lead, limit, before)
        turns = rows.history_from_rows([r[2:] for r in found if r[2] is not None], lead)
        return history_page(turns, lo > 1 and hi >= lo)

