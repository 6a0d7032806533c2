"""AgentCore Memory store: the managed service, through the SDK's ``MemorySessionManager`` / ``MemorySession``.

Service calls per plain turn: **2** — one ``ListEvents`` (``get_last_k_turns``:
one page of at most ``2k`` events, newest first) and one ``CreateEvent``
(``add_turns``: the user and assistant messages together). The count
``add_turns`` returns travels in each event's metadata (``user_messages``):
the tail read already holds the newest event, so its count is remembered for
the (actor, session) and the write needs no read of its own. Without a recent
read (or for events written by other tools, without that metadata) the store
reads what it needs first: correctness before call count.

Rolling summaries are events of the same session too, marked by the metadata
key ``summary_through`` (payload: a blob ``{"summary", "through_turn"}``).
Every turn read filters them out on the service side (``NOT_EXISTS``), the
summary read asks only for them (``EXISTS``, newest one), and
``delete_session`` deletes them with everything else.

Ids are checked against the service's own limits (read from the
``bedrock-agentcore`` model shipped in botocore) before any call: a write
with an id the service would refuse raises ``InvalidId``; a read of such an
id returns nothing, as nothing can be stored under it. Every failure of the
service or the network (after botocore's standard retries) becomes
``StoreUnavailable("agentcore", ...)``: HTTP 503.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar

import boto3
import botocore.session
from bedrock_agentcore.memory.constants import BlobMessage, ConversationalMessage, MessageRole
from bedrock_agentcore.memory.session import MemorySession, MemorySessionManager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import BadRequest, ConfigError, StoreUnavailable
from memory.base import SessionStore, StoredEvent, Summary, Turn, check_messages, group_turns, message_from_dict

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: event metadata: the session's USER message count after this event
COUNT_KEY = "user_messages"
#: event metadata marking a rolling-summary event (value: the turn it summarises through)
SUMMARY_KEY = "summary_through"
TURNS_ONLY = [{"left": {"metadataKey": SUMMARY_KEY}, "operator": "NOT_EXISTS"}]
SUMMARIES_ONLY = [{"left": {"metadataKey": SUMMARY_KEY}, "operator": "EXISTS"}]

PAGE = 100  # ListEvents maxResults limit
EVERYTHING = 1_000_000  # "all events": the SDK pages through them 100 at a time
MAX_MESSAGES_PER_EVENT = 100  # PayloadTypeList max
MAX_TEXT = 100_000  # ContentTextString max
COUNT_CACHE_SECONDS = 120.0  # a tail read's count serves the write that follows it (the model call in between)
COUNT_CACHE_ENTRIES = 10_000
LOCK_STRIPES = 256


def client_config() -> Config:
    """Bounded timeouts; throttling and transient errors retried by botocore's standard mode."""
    return Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=10)


class InvalidId(BadRequest, ValueError):
    """An actor or session id AgentCore Memory would refuse (checked before any call)."""


@dataclass(frozen=True)
class IdRule:
    """One id's limits, as the service model states them."""

    kind: str
    pattern: re.Pattern[str]
    min: int
    max: int | None

    @classmethod
    def from_shape(cls, kind: str, shape_name: str) -> IdRule:
        meta = _service_model().shape_for(shape_name).metadata
        return cls(kind, re.compile(meta["pattern"]), meta.get("min", 1), meta.get("max"))

    def problem(self, value: object) -> str | None:
        """Why the service would refuse ``value``, or None."""
        if not isinstance(value, str):
            return f"{self.kind} must be a string, got {type(value).__name__}"
        if len(value) < self.min or (self.max is not None and len(value) > self.max):
            limit = f"{self.min}-{self.max}" if self.max is not None else f"at least {self.min}"
            return f"{self.kind} {value!r} is {len(value)} characters long; AgentCore Memory allows {limit}"
        if not self.pattern.fullmatch(value):
            return f"{self.kind} {value!r} does not match AgentCore Memory's pattern {self.pattern.pattern}"
        return None


@functools.lru_cache(maxsize=1)
def _service_model() -> Any:
    return botocore.session.get_session().get_service_model("bedrock-agentcore")


@functools.lru_cache(maxsize=1)
def id_rules() -> dict[str, IdRule]:
    return {
        "actor": IdRule.from_shape("actor id", "ActorId"),
        "session": IdRule.from_shape("session id", "SessionId"),
        "memory": IdRule.from_shape("memory id", "MemoryId"),
    }


def _unavailable(func: Callable[P, R]) -> Callable[P, R]:
    """Final service or network failures (throttled, 5xx, unreachable, no credentials) -> HTTP 503."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ClientError as e:
            error = e.response.get("Error", {})
            raise StoreUnavailable("agentcore", f"{error.get('Code', 'ClientError')}: {error.get('Message', e)}") from e
        except BotoCoreError as e:
            raise StoreUnavailable("agentcore", f"{type(e).__name__}: {e}") from e

    return wrapper


# -- events -----------------------------------------------------------------------------------

def _messages(event: Any) -> list[ConversationalMessage]:
    """The conversational messages of an event, in order; other payloads (blobs) are not messages."""
    messages = []
    for item in event.get("payload") or []:
        conversational = item.get("conversational")
        if conversational is None:
            continue
        content = conversational.get("content") or {}
        message = message_from_dict({"role": conversational.get("role"), "text": content.get("text")})
        if message is not None:
            messages.append(message)
    return messages


def _users(event: Any) -> int:
    return sum(1 for m in _messages(event) if m.role == MessageRole.USER)


def _metadata_int(event: Any, key: str) -> int | None:
    value = ((event.get("metadata") or {}).get(key) or {}).get("stringValue")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _timestamp(event: Any) -> float:
    ts = event.get("eventTimestamp")
    return ts.timestamp() if isinstance(ts, datetime) else float(ts or 0)


def _newest_first(events: list[Any]) -> list[Any]:
    """The service lists newest first; sort anyway (stable), so turn order never depends on it."""
    return sorted(events, key=_timestamp, reverse=True)


def count_from(newest_first: Sequence[Any], complete: bool) -> int | None:
    """The session's USER count from its newest events: the newest count in metadata plus newer USERs.

    None when no event in view carries a count and older events exist (the caller counts them all).
    """
    newer = 0
    for event in newest_first:
        recorded = _metadata_int(event, COUNT_KEY)
        if recorded is not None:
            return recorded + newer
        newer += _users(event)
    return newer if complete else None


class AgentCoreStore(SessionStore):
    name = "agentcore"

    def __init__(self, memory_id: str, region_name: str | None = None, *,
                 boto3_session: boto3.Session | None = None) -> None:
        problem = id_rules()["memory"].problem(memory_id)
        if problem:
            raise ConfigError(f"MEMORY_ID: {problem}")
        if logging.getLogger("bedrock_agentcore.memory").level == logging.NOTSET:
            # the SDK logs every call at INFO (with message counts and emojis); ours are the request lines
            logging.getLogger("bedrock_agentcore.memory").setLevel(logging.WARNING)
        self.memory_id = memory_id
        self.manager = MemorySessionManager(
            memory_id, region_name=region_name, boto3_session=boto3_session, boto_client_config=client_config()
        )
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._counts: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        self._counts_lock = threading.Lock()
        self._clock_lock = threading.Lock()
        self._last_timestamp = 0.0

    # -- helpers -------------------------------------------------------------------------------

    def _session(self, actor_id: str, session_id: str) -> MemorySession:
        return self.manager.create_memory_session(actor_id, session_id)

    @staticmethod
    def _id_problem(actor_id: str, session_id: str) -> str | None:
        rules = id_rules()
        return rules["actor"].problem(actor_id) or rules["session"].problem(session_id)

    def _require_ids(self, actor_id: str, session_id: str) -> None:
        problem = self._id_problem(actor_id, session_id)
        if problem:
            raise InvalidId(problem)

    def _lock(self, actor_id: str, session_id: str) -> threading.Lock:
        """Writers of one session take turns in this process (the count is read, then written)."""
        return self._stripes[hash((actor_id, session_id)) % LOCK_STRIPES]

    def _remember(self, key: tuple[str, str], count: int) -> None:
        with self._counts_lock:
            self._counts[key] = (count, time.monotonic())
            self._counts.move_to_end(key)
            while len(self._counts) > COUNT_CACHE_ENTRIES:
                self._counts.popitem(last=False)

    def _recall(self, key: tuple[str, str]) -> int | None:
        with self._counts_lock:
            entry = self._counts.get(key)
            if entry is None or time.monotonic() - entry[1] > COUNT_CACHE_SECONDS:
                return None
            return entry[0]

    def _forget(self, key: tuple[str, str]) -> None:
        with self._counts_lock:
            self._counts.pop(key, None)

    def _event_time(self) -> datetime:
        """Strictly increasing timestamps from this process, so the service's order is the write order."""
        with self._clock_lock:
            self._last_timestamp = max(time.time(), self._last_timestamp + 0.001)
            return datetime.fromtimestamp(self._last_timestamp, tz=timezone.utc)

    @staticmethod
    def _newest(session: MemorySession, size: int, enough: Callable[[list[Any]], bool]) -> tuple[list[Any], bool]:
        """Newest turn events: one ListEvents of ``size``, grown only while ``enough`` says more are needed.

        Returns the events (newest first) and whether they are the whole session.
        """
        while True:
            events = _newest_first(session.list_events(max_results=size, eventMetadata=TURNS_ONLY))
            complete = len(events) < size
            if complete or enough(events):
                return events, complete
            size *= 4

    def _count(self, session: MemorySession) -> int:
        events, complete = self._newest(
            session, 1, lambda evs: any(_metadata_int(e, COUNT_KEY) is not None for e in evs)
        )
        count = count_from(events, complete)
        if count is None:  # no event carries a count (written by other tools): count them all
            everything = session.list_events(max_results=EVERYTHING, eventMetadata=TURNS_ONLY)
            count = sum(_users(e) for e in everything)
        return count

    # -- the contract --------------------------------------------------------------------------

    @_unavailable
    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage]) -> int:
        check_messages(messages)
        self._require_ids(actor_id, session_id)
        if len(messages) > MAX_MESSAGES_PER_EVENT:
            raise ValueError(f"AgentCore Memory takes at most {MAX_MESSAGES_PER_EVENT} messages per event")
        for message in messages:
            if not 1 <= len(message.text) <= MAX_TEXT:
                raise ValueError(f"AgentCore Memory stores message texts of 1-{MAX_TEXT} characters, "
                                 f"not {len(message.text)}")
        key = (actor_id, session_id)
        session = self._session(actor_id, session_id)
        with self._lock(actor_id, session_id):
            count = self._recall(key)
            if count is None:
                count = self._count(session)
            count += sum(1 for m in messages if m.role == MessageRole.USER)
            try:
                session.add_turns(
                    list(messages), metadata={COUNT_KEY: {"stringValue": str(count)}},
                    event_timestamp=self._event_time(),
                )
            except Exception:
                self._forget(key)  # the write may or may not have happened: read the count next time
                raise
            self._remember(key, count)
        logger.debug("actor_id=<%s> | session_id=<%s> | stored %d messages, count %d",
                     actor_id, session_id, len(messages), count)
        return count

    @_unavailable
    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        if k <= 0 or self._id_problem(actor_id, session_id):
            return []
        session = self._session(actor_id, session_id)
        with self._lock(actor_id, session_id):
            # 2k events cover k turns even when user and assistant were stored as separate events
            events, complete = self._newest(session, min(PAGE, 2 * k), lambda evs: sum(map(_users, evs)) >= k)
            count = count_from(events, complete)
            if count is not None:
                self._remember((actor_id, session_id), count)
        messages = [m for event in reversed(events) for m in _messages(event)]
        return group_turns(messages)[-k:]

    @_unavailable
    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        if self._id_problem(actor_id, session_id):
            return []
        events = self._session(actor_id, session_id).list_events(max_results=EVERYTHING, eventMetadata=TURNS_ONLY)
        oldest_first = sorted(reversed(events), key=_timestamp)
        return [StoredEvent(e["eventId"], _messages(e), _timestamp(e)) for e in oldest_first]

    @_unavailable
    def delete_session(self, actor_id: str, session_id: str) -> int:
        """The service has no DeleteSession: list every event (all pages) and delete each one."""
        if self._id_problem(actor_id, session_id):
            return 0
        key = (actor_id, session_id)
        session = self._session(actor_id, session_id)
        removed = 0
        with self._lock(actor_id, session_id):
            self._forget(key)
            try:
                for event in session.list_events(max_results=EVERYTHING, include_payload=False):
                    session.delete_event(event["eventId"])
                    if _metadata_int(event, SUMMARY_KEY) is None:
                        removed += 1
            finally:
                self._forget(key)
        logger.debug("actor_id=<%s> | session_id=<%s> | deleted %d events", actor_id, session_id, removed)
        return removed

    @_unavailable
    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        if self._id_problem(actor_id, session_id):
            return None
        events = _newest_first(
            self._session(actor_id, session_id).list_events(max_results=1, eventMetadata=SUMMARIES_ONLY)
        )
        for event in events:
            for item in event.get("payload") or []:
                blob = item.get("blob")
                if isinstance(blob, dict) and isinstance(blob.get("summary"), str):
                    through = _metadata_int(event, SUMMARY_KEY)
                    return Summary(blob["summary"], through if through is not None else int(blob["through_turn"]))
            logger.warning("actor_id=<%s> | session_id=<%s> | skipping a summary event without a summary",
                           actor_id, session_id)
        return None

    @_unavailable
    def put_summary(self, actor_id: str, session_id: str, summary: Summary) -> None:
        """Write the new summary event, then delete the older ones (a failure in between leaves a stale
        summary behind, never none: reads take the newest)."""
        self._require_ids(actor_id, session_id)
        session = self._session(actor_id, session_id)
        with self._lock(actor_id, session_id):
            created = session.add_turns(
                [BlobMessage({"summary": summary.text, "through_turn": summary.through_turn})],
                metadata={SUMMARY_KEY: {"stringValue": str(summary.through_turn)}},
                event_timestamp=self._event_time(),
            )
            for event in session.list_events(max_results=EVERYTHING, eventMetadata=SUMMARIES_ONLY,
                                             include_payload=False):
                if event["eventId"] != created["eventId"]:
                    session.delete_event(event["eventId"])

    def close(self) -> None:
        self.manager._data_plane_client.close()
