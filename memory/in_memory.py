"""In-process store: a dict behind one lock. Development and tests only: nothing survives a restart."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from memory.base import SessionStore, StoredEvent, Summary, Turn, check_messages, count_user_messages, group_turns


@dataclass
class _Session:
    events: list[StoredEvent] = field(default_factory=list)
    user_messages: int = 0
    # start index (into the flat message list) of each turn, so the tail is found without a scan
    turn_starts: list[int] = field(default_factory=list)
    messages: list[ConversationalMessage] = field(default_factory=list)
    summary: Summary | None = None
    updated_at: float = field(default_factory=time.monotonic)


class InMemoryStore(SessionStore):
    name = "memory"

    def __init__(self, ttl: int | None = None) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._ids = itertools.count(1)

    def _live(self, key: tuple[str, str]) -> _Session | None:
        session = self._sessions.get(key)
        if session is not None and self._ttl is not None and time.monotonic() - session.updated_at > self._ttl:
            del self._sessions[key]
            return None
        return session

    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage]) -> int:
        check_messages(messages)
        with self._lock:
            key = (actor_id, session_id)
            session = self._live(key) or self._sessions.setdefault(key, _Session())
            for message in messages:
                if message.role == MessageRole.USER or not session.turn_starts:
                    session.turn_starts.append(len(session.messages))
                session.messages.append(message)
            session.events.append(StoredEvent(str(next(self._ids)), list(messages)))
            session.user_messages += count_user_messages(messages)
            session.updated_at = time.monotonic()
            return session.user_messages

    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        with self._lock:
            session = self._live((actor_id, session_id))
            if session is None or k <= 0 or not session.turn_starts:
                return []
            start = session.turn_starts[max(0, len(session.turn_starts) - k)]
            return group_turns(session.messages[start:])

    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        with self._lock:
            session = self._live((actor_id, session_id))
            return list(session.events) if session else []

    def delete_session(self, actor_id: str, session_id: str) -> int:
        with self._lock:
            session = self._sessions.pop((actor_id, session_id), None)
            return len(session.events) if session else 0

    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        with self._lock:
            session = self._live((actor_id, session_id))
            return session.summary if session else None

    def put_summary(self, actor_id: str, session_id: str, summary: Summary) -> None:
        with self._lock:
            key = (actor_id, session_id)
            session = self._live(key) or self._sessions.setdefault(key, _Session())
            session.summary = summary
