"""In-process store: dicts behind one lock. Development and tests only: nothing survives a restart.

Generations live in their own dict (the tombstones), so neither a delete nor an expiry loses them
(a session found expired moves its generation on: ``memory.expiry``); each actor's session ids are
indexed, so ``list_sessions`` looks at that actor's sessions only.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.errors import AlreadyStored, SessionChanged
from memory.expiry import DEFAULT_TURN_GRACE, load_expiry, write_expiry
from memory.base import (
    HistoryPage, SessionInfo, SessionPage, SessionStore, StoredEvent, StoredReply, Summary, Turn, Window, after_cursor,
    check_idempotency_key, check_messages, clip_first_message, count_user_messages, decode_cursor, group_turns,
    history_bounds, history_page, history_turn, page_sessions, reply_of, request_retention,
)


@dataclass
class _Request:
    stored_at: float
    reply: StoredReply


@dataclass
class _Session:
    events: list[StoredEvent] = field(default_factory=list)
    user_messages: int = 0
    # start index (into the flat message list) of each turn, so the tail is found without a scan
    turn_starts: list[int] = field(default_factory=list)
    turn_times: list[float] = field(default_factory=list)  # when each turn's first message was written
    messages: list[ConversationalMessage] = field(default_factory=list)
    summary: Summary | None = None
    requests: dict[str, _Request] = field(default_factory=dict)
    expires_at: float = float("inf")  # on the monotonic clock (``memory.expiry``); inf without a TTL
    written_at: float = 0.0  # last add_turns (epoch seconds): the listing order


class InMemoryStore(SessionStore):
    name = "memory"

    def __init__(self, ttl: int | None = None, *, turn_grace: float = DEFAULT_TURN_GRACE) -> None:
        """``turn_grace``: the longest a turn takes from its ``load_window`` to its write (``memory.expiry``)."""
        self._ttl = ttl
        self._turn_grace = turn_grace
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._by_actor: defaultdict[str, set[str]] = defaultdict(set)
        self._generations: dict[tuple[str, str], int] = {}
        self._ids = itertools.count(1)

    def _expired(self, session: _Session) -> bool:
        return self._ttl is not None and time.monotonic() > session.expires_at

    def _drop(self, key: tuple[str, str]) -> _Session | None:
        session = self._sessions.pop(key, None)
        if session is not None:
            self._by_actor[key[0]].discard(key[1])
            if not self._by_actor[key[0]]:
                del self._by_actor[key[0]]
        return session

    def _live(self, key: tuple[str, str]) -> _Session | None:
        session = self._sessions.get(key)
        if session is not None and self._expired(session):
            self._drop(key)
            if session.messages:  # a life of turns ended: the id starts a new generation
                self._generations[key] = self._generations.get(key, 0) + 1
            return None
        return session

    def _open(self, key: tuple[str, str]) -> _Session:
        session = self._live(key)
        if session is None:
            session = self._sessions[key] = _Session()
            if self._ttl is not None:
                session.expires_at = write_expiry(time.monotonic(), self._ttl)
            self._by_actor[key[0]].add(key[1])
        return session

    def _check_generation(self, key: tuple[str, str], generation: int | None) -> bool:
        return generation is None or self._generations.get(key, 0) == generation

    @staticmethod
    def _recorded(session: _Session | None, key: str, cutoff: float) -> StoredReply | None:
        request = session.requests.get(key) if session else None
        return request.reply if request is not None and request.stored_at >= cutoff else None

    def _request_cutoff(self) -> float:
        return time.time() - request_retention(self._ttl)

    # -- writes --------------------------------------------------------------------------------

    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage], *,
                  generation: int | None = None, idempotency_key: str | None = None) -> int:
        check_messages(messages)
        check_idempotency_key(idempotency_key)
        key = (actor_id, session_id)
        with self._lock:
            live = self._live(key)  # first: an expired session moves its generation on
            if not self._check_generation(key, generation):
                raise SessionChanged()
            if idempotency_key is not None:
                stored = self._recorded(live, idempotency_key, self._request_cutoff())
                if stored is not None:
                    raise AlreadyStored(stored.message_count, stored.reply)
            session = self._open(key)
            now = time.time()
            for message in messages:
                if message.role == MessageRole.USER or not session.turn_starts:
                    session.turn_starts.append(len(session.messages))
                    session.turn_times.append(now)
                session.messages.append(message)
            session.events.append(StoredEvent(str(next(self._ids)), list(messages), now))
            session.user_messages += count_user_messages(messages)
            if self._ttl is not None:
                session.expires_at = write_expiry(time.monotonic(), self._ttl, session.expires_at)
            session.written_at = now
            if idempotency_key is not None:
                cutoff = self._request_cutoff()
                for old in [k for k, r in session.requests.items() if r.stored_at < cutoff]:
                    del session.requests[old]
                session.requests[idempotency_key] = _Request(now, StoredReply(session.user_messages,
                                                                              reply_of(messages)))
            return session.user_messages

    def delete_session(self, actor_id: str, session_id: str) -> int:
        key = (actor_id, session_id)
        with self._lock:
            session = self._live(key)
            self._generations[key] = self._generations.get(key, 0) + 1
            self._drop(key)
            return len(session.events) if session else 0

    def put_summary(self, actor_id: str, session_id: str, summary: Summary, *, generation: int | None = None) -> bool:
        key = (actor_id, session_id)
        with self._lock:
            known = key in self._sessions
            live = self._live(key)
            if not self._check_generation(key, generation):
                return False
            if known and live is None:
                return False  # it expired: its summary must not reach the session that starts next
            if generation is not None and (live.user_messages if live else 0) < summary.through_turn:
                return False  # the turns it summarises are gone
            session = self._open(key)
            session.summary = summary
            return True

    # -- reads ---------------------------------------------------------------------------------

    def load_window(self, actor_id: str, session_id: str, k: int) -> Window:
        return self._window(actor_id, session_id, k, touch=True)

    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        return self._window(actor_id, session_id, k, touch=False).turns

    def _window(self, actor_id: str, session_id: str, k: int, *, touch: bool) -> Window:
        key = (actor_id, session_id)
        with self._lock:
            session = self._live(key)
            generation = self._generations.get(key, 0)
            if session is None:
                return Window([], generation, 0)
            if touch and self._ttl is not None:  # hold the session for the turn in progress
                session.expires_at = load_expiry(time.monotonic(), self._ttl, self._turn_grace, session.expires_at)
            if k <= 0 or not session.turn_starts:
                return Window([], generation, session.user_messages)
            start = session.turn_starts[max(0, len(session.turn_starts) - k)]
            return Window(group_turns(session.messages[start:]), generation, session.user_messages)

    def find_request(self, actor_id: str, session_id: str, key: str) -> StoredReply | None:
        with self._lock:
            return self._recorded(self._live((actor_id, session_id)), key, self._request_cutoff())

    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        with self._lock:
            session = self._live((actor_id, session_id))
            return list(session.events) if session else []

    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        with self._lock:
            session = self._live((actor_id, session_id))
            return session.summary if session else None

    def list_sessions(self, actor_id: str, limit: int, cursor: str | None = None) -> SessionPage:
        position = decode_cursor(cursor) if cursor is not None else None
        with self._lock:
            infos = []
            for session_id in list(self._by_actor.get(actor_id, ())):
                session = self._live((actor_id, session_id))
                if session is None or not session.messages or not after_cursor(session.written_at, session_id,
                                                                               position):
                    continue
                first = next((m.text for m in session.messages if m.role == MessageRole.USER), "")
                infos.append(SessionInfo(session_id, session.user_messages, session.written_at,
                                         clip_first_message(first)))
        infos.sort(key=lambda i: (i.updated_at, i.session_id), reverse=True)
        return page_sessions(infos, limit)

    def get_history(self, actor_id: str, session_id: str, limit: int, before: int | None = None) -> HistoryPage:
        with self._lock:
            session = self._live((actor_id, session_id))
            if session is None or not session.turn_starts:
                return HistoryPage([], None)
            starts = session.turn_starts
            lead = len(starts) - session.user_messages
            lo, hi = history_bounds(len(starts), lead, limit, before)
            turns = []
            for position in range(lo, hi + 1):
                end = starts[position] if position < len(starts) else len(session.messages)
                turns.append(history_turn(position - lead, session.messages[starts[position - 1]:end],
                                          session.turn_times[position - 1]))
        return history_page(turns, lo > 1)
