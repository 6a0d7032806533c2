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

Generations are **per process**: the service has no conditional write, so
``delete_session`` bumps an in-process generation and ``add_turns`` /
``put_summary`` compare against it under the session's lock. A clear on
another replica is not seen by ``add_turns``; ``put_summary(generation=...)``
catches it anyway with one more ``ListEvents`` (a summary through turn T is
refused when the session no longer holds T turns). The AgentCore runtime routes
a session to one instance, which is what makes this enough there.

Idempotency keys travel in the turn's event metadata (``request_key``: the
key's SHA-256, since metadata values allow few characters), so ``find_request``
is one ``ListEvents`` with an ``EQUALS_TO`` filter, and ``CreateEvent`` gets a
``clientToken`` derived from (memory, actor, session, generation, key): two
replicas writing the same keyed turn at once store one event. A keyed turn
costs one call more (the key's look-up); a plain turn stays at 2.

``list_sessions``: the service lists an actor's sessions (``ListSessions``, 100
per call) but not by activity, so each page costs ceil(S/100) ``ListSessions``
+ S ``ListEvents`` (the newest turn event of each of the actor's S sessions:
last write and count) + one ``ListEvents`` per session on the page (its first
turn's event, found by ``user_messages`` = 1); calls run 8 at a time. Other
actors cost nothing. ``get_history`` pages ``ListEvents`` (100 events per
call) from the newest until the page is complete.

Ids are checked against the service's own limits (read from the
``bedrock-agentcore`` model shipped in botocore) before any call: a write
with an id the service would refuse raises ``InvalidId``; a read of such an
id returns nothing, as nothing can be stored under it. Every failure of the
service or the network (after botocore's standard retries) becomes
``StoreUnavailable("agentcore", ...)``: HTTP 503.

What is read out of events (messages, counts, numbered history turns), the id rules and the
constants live in ``memory.agentcore_events``.
"""


from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import boto3
from bedrock_agentcore.memory.constants import BlobMessage, ConversationalMessage, MessageRole
from bedrock_agentcore.memory.session import MemorySession, MemorySessionManager

from core.errors import AlreadyStored, ConfigError, SessionChanged
from memory.agentcore_events import (
    COUNT_CACHE_ENTRIES, COUNT_CACHE_SECONDS, COUNT_KEY, EVERYTHING, GENERATION_ENTRIES, LISTING_WORKERS,
    LOCK_STRIPES, MAX_MESSAGES_PER_EVENT, MAX_TEXT, NONCE_KEY, PAGE, REQUEST_KEY, SUMMARIES_ONLY, SUMMARY_KEY,
    TURNS_ONLY, InvalidId, client_config, count_from, equals, event_messages, event_time, event_users, id_rules,
    metadata_int, numbered_turns, sha256_of, sorted_newest_first, unavailable,
)
from memory.base import (
    HistoryPage, SessionInfo, SessionPage, SessionStore, StoredEvent, StoredReply, Summary, Turn, Window,
    after_cursor, check_idempotency_key, check_messages, clip_first_message, decode_cursor, group_turns,
    history_page, page_sessions, reply_of, request_retention,
)

__all__ = ["COUNT_KEY", "SUMMARY_KEY", "AgentCoreStore", "InvalidId"]

logger = logging.getLogger(__name__)


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
        # the SDK's own client, for what its methods do not expose: clientToken, nextToken, ListSessions' filter
        self._client = self.manager._data_plane_client
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._counts: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        self._counts_lock = threading.Lock()
        self._generations: OrderedDict[tuple[str, str], int] = OrderedDict()
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

    def _generation(self, key: tuple[str, str]) -> int:
        with self._counts_lock:
            return self._generations.get(key, 0)

    def _bump_generation(self, key: tuple[str, str]) -> None:
        with self._counts_lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            self._generations.move_to_end(key)
            while len(self._generations) > GENERATION_ENTRIES:
                self._generations.popitem(last=False)

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
            events = sorted_newest_first(session.list_events(max_results=size, eventMetadata=TURNS_ONLY))
            complete = len(events) < size
            if complete or enough(events):
                return events, complete
            size *= 4

    def _count(self, session: MemorySession) -> int:
        events, complete = self._newest(
            session, 1, lambda evs: any(metadata_int(e, COUNT_KEY) is not None for e in evs)
        )
        count = count_from(events, complete)
        if count is None:  # no event carries a count (written by other tools): count them all
            everything = session.list_events(max_results=EVERYTHING, eventMetadata=TURNS_ONLY)
            count = sum(event_users(e) for e in everything)
        return count

    @staticmethod
    def _stored_reply(session: MemorySession, key_hash: str) -> StoredReply | None:
        """The turn stored under this key's hash, if the service still holds it and it is within the retention."""
        for event in session.list_events(max_results=1, eventMetadata=equals(REQUEST_KEY, key_hash)):
            if event_time(event) < time.time() - request_retention(None):
                return None
            return StoredReply(metadata_int(event, COUNT_KEY) or 0, reply_of(event_messages(event)))
        return None

    def _create_keyed(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage],
                      metadata: dict[str, Any], token: str) -> bool:
        """CreateEvent with our ``clientToken`` (the SDK's ``add_turns`` does not take one).

        Returns whether the event the service answers with is this call's (a nonce in its metadata
        says so): otherwise the service had already taken the token and stored nothing.
        """
        nonce = uuid.uuid4().hex
        response = self._client.create_event(
            memoryId=self.memory_id, actorId=actor_id, sessionId=session_id, eventTimestamp=self._event_time(),
            payload=[{"conversational": {"content": {"text": m.text}, "role": m.role.value}} for m in messages],
            metadata={**metadata, NONCE_KEY: {"stringValue": nonce}}, clientToken=token,
        )
        return ((response["event"].get("metadata") or {}).get(NONCE_KEY) or {}).get("stringValue") == nonce

    # -- writes --------------------------------------------------------------------------------

    @unavailable
    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage], *,
                  generation: int | None = None, idempotency_key: str | None = None) -> int:
        check_messages(messages)
        check_idempotency_key(idempotency_key)
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
            current = self._generation(key)
            if generation is not None and current != generation:
                raise SessionChanged()
            key_hash = sha256_of(idempotency_key) if idempotency_key is not None else None
            if key_hash is not None:
                stored = self._stored_reply(session, key_hash)
                if stored is not None:
                    raise AlreadyStored(stored.message_count, stored.reply)
            count = self._recall(key)
            if count is None:
                count = self._count(session)
            count += sum(1 for m in messages if m.role == MessageRole.USER)
            try:
                if key_hash is None:
                    session.add_turns(list(messages), metadata=self._metadata(count),
                                      event_timestamp=self._event_time())
                else:
                    count = self._store_keyed(actor_id, session_id, session, messages, count, key_hash, current)
            except Exception:
                self._forget(key)  # the write may or may not have happened: read the count next time
                raise
            self._remember(key, count)
        logger.debug("actor_id=<%s> | session_id=<%s> | stored %d messages, count %d",
                     actor_id, session_id, len(messages), count)
        return count

    def _store_keyed(self, actor_id: str, session_id: str, session: MemorySession,
                     messages: Sequence[ConversationalMessage], count: int, key_hash: str, generation: int) -> int:
        """One CreateEvent whose clientToken makes a concurrent twin (another replica) a no-op; returns the count.

        When the service answers with an event that is not ours, it had already taken this token:
        the twin's turn stands (``AlreadyStored``) if it is still stored; if that turn was deleted
        since (a clear on another replica, so the remembered count is stale too), the turn is
        counted afresh and stored under a new token.
        """
        token = sha256_of(self.memory_id, actor_id, session_id, str(generation), key_hash)
        if self._create_keyed(actor_id, session_id, messages, self._metadata(count, key_hash), token):
            return count
        stored = self._stored_reply(session, key_hash)
        if stored is not None:
            raise AlreadyStored(stored.message_count, stored.reply)
        count = self._count(session) + sum(1 for m in messages if m.role == MessageRole.USER)
        self._create_keyed(actor_id, session_id, messages, self._metadata(count, key_hash), uuid.uuid4().hex)
        return count

    @staticmethod
    def _metadata(count: int, key_hash: str | None = None) -> dict[str, Any]:
        metadata = {COUNT_KEY: {"stringValue": str(count)}}
        if key_hash is not None:
            metadata[REQUEST_KEY] = {"stringValue": key_hash}
        return metadata

    @unavailable
    def delete_session(self, actor_id: str, session_id: str) -> int:
        """The service has no DeleteSession: list every event (all pages) and delete each one."""
        if self._id_problem(actor_id, session_id):
            return 0
        key = (actor_id, session_id)
        session = self._session(actor_id, session_id)
        removed = 0
        with self._lock(actor_id, session_id):
            self._bump_generation(key)
            self._forget(key)
            try:
                for event in session.list_events(max_results=EVERYTHING, include_payload=False):
                    session.delete_event(event["eventId"])
                    if metadata_int(event, SUMMARY_KEY) is None:
                        removed += 1
            finally:
                self._forget(key)
        logger.debug("actor_id=<%s> | session_id=<%s> | deleted %d events", actor_id, session_id, removed)
        return removed

    @unavailable
    def put_summary(self, actor_id: str, session_id: str, summary: Summary, *, generation: int | None = None) -> bool:
        """Write the new summary event, then delete the older ones (a failure in between leaves a stale
        summary behind, never none: reads take the newest).

        With ``generation``: refused after a clear in this process, and (one more ListEvents) when
        the session no longer holds the turns the summary covers: a clear on another replica.
        """
        self._require_ids(actor_id, session_id)
        key = (actor_id, session_id)
        session = self._session(actor_id, session_id)
        with self._lock(actor_id, session_id):
            if generation is not None and (self._generation(key) != generation
                                           or self._count(session) < summary.through_turn):
                return False
            created = session.add_turns(
                [BlobMessage({"summary": summary.text, "through_turn": summary.through_turn})],
                metadata={SUMMARY_KEY: {"stringValue": str(summary.through_turn)}},
                event_timestamp=self._event_time(),
            )
            for event in session.list_events(max_results=EVERYTHING, eventMetadata=SUMMARIES_ONLY,
                                             include_payload=False):
                if event["eventId"] != created["eventId"]:
                    session.delete_event(event["eventId"])
        return True

    # -- reads ---------------------------------------------------------------------------------

    def load_window(self, actor_id: str, session_id: str, k: int) -> Window:
        """One ListEvents (as ``get_last_k_turns``); the count comes from the newest event's metadata."""
        return self._window(actor_id, session_id, k, need_count=True)

    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        return self._window(actor_id, session_id, k, need_count=False).turns

    @unavailable
    def _window(self, actor_id: str, session_id: str, k: int, *, need_count: bool) -> Window:
        if self._id_problem(actor_id, session_id):
            return Window([], 0, 0)
        key = (actor_id, session_id)
        session = self._session(actor_id, session_id)
        with self._lock(actor_id, session_id):
            generation = self._generation(key)
            if k <= 0:
                return Window([], generation, self._count(session) if need_count else 0)
            # 2k events cover k turns even when user and assistant were stored as separate events
            events, complete = self._newest(session, min(PAGE, 2 * k), lambda evs: sum(map(event_users, evs)) >= k)
            count = count_from(events, complete)
            if count is None and need_count:  # events without our metadata (other tools): count them
                count = self._count(session)
            if count is not None:
                self._remember(key, count)
        messages = [m for event in reversed(events) for m in event_messages(event)]
        return Window(group_turns(messages)[-k:], generation, count or 0)

    @unavailable
    def find_request(self, actor_id: str, session_id: str, key: str) -> StoredReply | None:
        """One ListEvents filtered on the key's hash (``EQUALS_TO``)."""
        if self._id_problem(actor_id, session_id):
            return None
        return self._stored_reply(self._session(actor_id, session_id), sha256_of(key))

    @unavailable
    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        if self._id_problem(actor_id, session_id):
            return []
        events = self._session(actor_id, session_id).list_events(max_results=EVERYTHING, eventMetadata=TURNS_ONLY)
        oldest_first = sorted(reversed(events), key=event_time)
        return [StoredEvent(e["eventId"], event_messages(e), event_time(e)) for e in oldest_first]

    @unavailable
    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        if self._id_problem(actor_id, session_id):
            return None
        events = sorted_newest_first(
            self._session(actor_id, session_id).list_events(max_results=1, eventMetadata=SUMMARIES_ONLY)
        )
        for event in events:
            for item in event.get("payload") or []:
                blob = item.get("blob")
                if isinstance(blob, dict) and isinstance(blob.get("summary"), str):
                    through = metadata_int(event, SUMMARY_KEY)
                    return Summary(blob["summary"], through if through is not None else int(blob["through_turn"]))
            logger.warning("actor_id=<%s> | session_id=<%s> | skipping a summary event without a summary",
                           actor_id, session_id)
        return None

    def _session_ids(self, actor_id: str) -> list[str]:
        """Every session of the actor that holds events: ``ListSessions``, 100 per call."""
        ids: list[str] = []
        params: dict[str, Any] = {"memoryId": self.memory_id, "actorId": actor_id, "maxResults": PAGE,
                                  "filter": {"eventFilter": "HAS_EVENTS"}}
        while True:
            response = self._client.list_sessions(**params)
            ids += [summary["sessionId"] for summary in response.get("sessionSummaries") or []]
            if not response.get("nextToken"):
                return ids
            params["nextToken"] = response["nextToken"]

    def _session_info(self, actor_id: str, session_id: str) -> SessionInfo | None:
        """Last write and count from the newest turn event (one ListEvents); None without turns."""
        session = self._session(actor_id, session_id)
        events = session.list_events(max_results=1, eventMetadata=TURNS_ONLY)
        if not events:
            return None
        count = metadata_int(events[0], COUNT_KEY)
        if count is None:
            count = self._count(session)
        return SessionInfo(session_id, count, event_time(events[0]), "")

    def _with_first_message(self, actor_id: str, info: SessionInfo) -> SessionInfo:
        """The first USER message, from the event that took the count to 1 (one ListEvents); "" if none has it."""
        events = self._session(actor_id, info.session_id).list_events(max_results=1,
                                                                      eventMetadata=equals(COUNT_KEY, "1"))
        first = next((m.text for e in events for m in event_messages(e) if m.role == MessageRole.USER), "")
        return SessionInfo(info.session_id, info.message_count, info.updated_at, clip_first_message(first))

    @unavailable
    def list_sessions(self, actor_id: str, limit: int, cursor: str | None = None) -> SessionPage:
        """The service does not list sessions by activity: read the newest event of each of the actor's sessions."""
        position = decode_cursor(cursor) if cursor is not None else None
        if id_rules()["actor"].problem(actor_id):
            return SessionPage([], None)
        ids = self._session_ids(actor_id)
        if not ids:
            return SessionPage([], None)
        with ThreadPoolExecutor(max_workers=min(LISTING_WORKERS, len(ids))) as pool:
            infos = [i for i in pool.map(lambda sid: self._session_info(actor_id, sid), ids)
                     if i is not None and after_cursor(i.updated_at, i.session_id, position)]
            infos.sort(key=lambda i: (i.updated_at, i.session_id), reverse=True)
            page = list(pool.map(lambda i: self._with_first_message(actor_id, i), infos[:limit]))
        return page_sessions(page + infos[limit:limit + 1], limit)

    @unavailable
    def get_history(self, actor_id: str, session_id: str, limit: int, before: int | None = None) -> HistoryPage:
        """ListEvents pages (100 events each), newest first, until ``limit`` turns below ``before`` and one more."""
        if self._id_problem(actor_id, session_id):
            return HistoryPage([], None)
        params: dict[str, Any] = {"memoryId": self.memory_id, "actorId": actor_id, "sessionId": session_id,
                                  "maxResults": PAGE, "includePayloads": True,
                                  "filter": {"eventMetadata": TURNS_ONLY}}
        events: list[Any] = []
        while True:
            response = self._client.list_events(**params)
            events += sorted_newest_first(response.get("events") or [])
            complete = not response.get("nextToken")
            wanted = [t for t in numbered_turns(events, complete) if before is None or t.turn < before]
            if complete or len(wanted) > limit:
                break
            params["nextToken"] = response["nextToken"]
        return history_page(wanted[-limit:], len(wanted) > limit)

    def close(self) -> None:
        self._client.close()
