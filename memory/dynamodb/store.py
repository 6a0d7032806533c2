"""``DynamoDBStore``: the contract's reads (one ``Query`` per window) on top of its writes."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from botocore.exceptions import ClientError

from core.errors import StoreUnavailable
from memory.base import (
    HistoryPage, SessionInfo, SessionPage, StoredEvent, StoredReply, Summary, Turn, Window, check_idempotency_key,
    clip_first_message, decode_cursor, history_bounds, history_page, history_turn, page_sessions, reply_of,
)
from memory.expiry import load_expiry
from memory.dynamodb.items import (
    Head, _code, _describe, _Fragment, _n, _not_issued, _number, _Record, _s, _ttl_stamp, _unavailable, _update,
)
from memory.dynamodb.keys import (
    _LAST_EVENT, _LAST_PART, ACTOR_INDEX, META_SK, TTL_ATTRIBUTE, UNLIST_PER_CALL, WINDOW_SUMMARY_SECONDS,
    FragmentKey, actor_key, request_sk, session_pk,
)
from memory.dynamodb.table import check_table
from memory.dynamodb.writes import SessionWrites

logger = logging.getLogger(__name__)


class DynamoDBStore(SessionWrites):
    name = "dynamodb"

    def check_table(self, *, create: bool = False) -> None:
        """Start-up: the table exists (or is created) and has the store's schema; else ``ConfigError``, one line."""
        check_table(self._client, self._table, self._ttl, create=create)

    # -- the contract: windows -------------------------------------------------------------------

    @_unavailable
    def load_window(self, actor_id: str, session_id: str, k: int) -> Window:
        return self._load(actor_id, session_id, k, touch=True)

    @_unavailable
    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        if k <= 0:
            return []
        return self._load(actor_id, session_id, k, touch=False).turns

    def _load(self, actor_id: str, session_id: str, k: int, *, touch: bool) -> Window:
        """One ``Query``: the head (generation, count) and the newest k turns. ``touch``: a turn's load,
        which holds the session for the turn (``memory.expiry``; a second call, only once less than half of
        the TTL is left: until then the process that loaded it, the one that writes the turn, remembers)."""
        pk = session_pk(actor_id, session_id)
        head, fragments = self._read(pk, k)
        now = time.time()
        seen = self._seen_again(self._remembered(pk), head)
        alive = self._live(seen, now)
        live_at = None
        if alive and touch and self._ttl is not None:
            assert head is not None
            head = self._touch(pk, actor_id, session_id, head, now)
            live_at = now
        self._remember(pk, head, live_at)
        self._window.pk, self._window.head, self._window.at = pk, head, time.monotonic()
        if head is None:
            return Window([], 0, 0)
        if not alive:  # expired: the next write starts it again under the generation it reports
            return Window([], self._writer_generation(seen, now), 0)
        whole = [(messages, started) for messages, started in
                 self._by_turn(fragments, actor_id, session_id).values() if started is not None]
        # (a turn whose every message was damaged is left out)
        return Window([messages for messages, _ in whole[-k:] if messages] if k > 0 else [], head.generation,
                      head.users)

    def _touch(self, pk: str, actor_id: str, session_id: str, head: Head, now: float) -> Head:
        """Hold the session for a turn in progress; skipped while more than half of the TTL is left."""
        assert self._ttl is not None and self._hold is not None
        if head.live_until is None or head.live_until - now >= self._ttl / 2:
            return head
        live_until = load_expiry(now, self._ttl, self._hold)
        try:
            answer = self._client.update_item(**_update(
                self._table, self._key(pk, META_SK), ["#lu = :lu", "#exp = :exp"], [],
                "#epoch = :epoch AND #lu > :now AND #lu < :lu",
                {"#lu": "live_until", "#exp": TTL_ATTRIBUTE, "#epoch": "epoch"},
                {":lu": _n(live_until), ":exp": _n(_ttl_stamp(now + self._generation_ttl)),
                 ":epoch": _n(head.epoch), ":now": _n(now)}), ReturnValues="ALL_NEW")
        except ClientError as e:
            if _code(e) != "ConditionalCheckFailedException":
                raise
            return head  # written (or cleared) meanwhile: that write was the activity
        touched = Head.from_item(answer["Attributes"])
        self._keep_fragments_alive(pk, actor_id, session_id, touched, now)
        return touched

    @_unavailable
    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        pk = session_pk(actor_id, session_id)
        head, fragments = self._read(pk, None)
        if head is None or not self._held(pk, head, time.time()):
            return []
        events: dict[int, StoredEvent] = {}
        for fragment in sorted(fragments, key=lambda f: f.key):
            event = events.setdefault(fragment.key.event,
                                      StoredEvent(str(fragment.key.event), [], fragment.timestamp))
            event.messages.extend(self._messages(fragment, actor_id, session_id))
        return [events[e] for e in sorted(events)]

    @_unavailable
    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        pk = session_pk(actor_id, session_id)
        window = self._window
        if getattr(window, "pk", None) == pk and time.monotonic() - window.at <= WINDOW_SUMMARY_SECONDS:
            window.pk = None  # the head the window read just returned: one call less per turn
            head = window.head
        else:
            head = self._read_head(pk)
        if head is None or not self._held(pk, head, time.time()):
            return None
        return head.summary

    @_unavailable
    def get_history(self, actor_id: str, session_id: str, limit: int, before: int | None = None) -> HistoryPage:
        """Two calls: ``GetItem`` of the head (its epoch and counts), then a ``Query`` of the page's turns only."""
        pk = session_pk(actor_id, session_id)
        head = self._read_head(pk)
        if head is None or not self._held(pk, head, time.time()) or head.turns == 0:
            return HistoryPage([], None)
        lead = head.turns - head.users  # 1 when the session begins with a turn without a USER message
        lo, hi = history_bounds(head.turns, lead, limit, before)
        if hi < lo:
            return HistoryPage([], None)
        fragments: dict[tuple[int, int], _Fragment] = {}
        for items in self._query_pages(
                KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={":pk": _s(pk), ":lo": _s(FragmentKey(head.epoch, lo, 0, 0).sk),
                                           ":hi": _s(FragmentKey(head.epoch, hi, _LAST_EVENT, _LAST_PART).sk)}):
            for item in items:
                key = FragmentKey.parse(item["sk"]["S"])
                if key is not None:
                    self._collect(fragments, key, item)
        turns = [history_turn(position - lead, messages, started or 0.0) for position, (messages, started)
                 in self._by_turn(list(fragments.values()), actor_id, session_id).items()]
        return history_page(turns, lo > 1)

    @_unavailable
    def list_sessions(self, actor_id: str, limit: int, cursor: str | None = None) -> SessionPage:
        """The ``sessions_by_actor`` index, newest write first: one ``Query`` per page (another when expired
        sessions, skipped at read time, left it short). The cursor is the last session's index key."""
        position = decode_cursor(cursor) if cursor is not None else None
        if position is not None and not math.isfinite(position[0]):
            raise _not_issued(cursor)
        key = actor_key(actor_id)
        query: dict[str, Any] = {
            "TableName": self._table, "IndexName": ACTOR_INDEX, "KeyConditionExpression": "actor_key = :ak",
            "ExpressionAttributeValues": {":ak": _s(key)}, "ScanIndexForward": False}
        if position is not None:
            query["ExclusiveStartKey"] = {"actor_key": _s(key), "updated_at": _n(position[0]),
                                          "pk": _s(session_pk(actor_id, position[1])), "sk": _s(META_SK)}
        now = time.time()
        found: list[SessionInfo] = []
        expired: list[dict[str, Any]] = []
        while len(found) <= limit:
            query["Limit"] = limit + 1 - len(found) + len(expired)  # (more when expired ones were skipped)
            try:
                page = self._client.query(**query)
            except ClientError as e:
                if position is not None and not found and not expired and _code(e) == "ValidationException":
                    raise _not_issued(cursor) from e  # a key DynamoDB cannot take (decode_cursor let it through)
                raise
            for item in page.get("Items", []):
                live_until = _number(item, "live_until")
                if live_until is not None and live_until <= now:
                    expired.append(item)
                    continue
                found.append(SessionInfo(item.get("session_id", {}).get("S", ""), int(_number(item, "users") or 0),
                                         _number(item, "updated_at") or 0.0,
                                         clip_first_message(item.get("first_message", {}).get("S"))))
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        self._unlist(expired[:UNLIST_PER_CALL], now)
        return page_sessions(found, limit)

    def _unlist(self, items: list[dict[str, Any]], now: float) -> None:
        """Take expired sessions out of the actor index, so a listing pays for each only once. Best effort,
        and only while the session is still expired (a write since has listed it again)."""
        for item in items:
            try:
                self._client.update_item(**_update(
                    self._table, {"pk": item["pk"], "sk": item["sk"]}, [], ["#ak"], "#lu <= :now",
                    {"#ak": "actor_key", "#lu": "live_until"}, {":now": _n(now)}))
            except ClientError as e:
                if _code(e) != "ConditionalCheckFailedException":
                    logger.debug("table=<%s> | expired sessions left in the actor index: %s", self._table,
                                 _describe(e))
                    return

    @_unavailable
    def find_request(self, actor_id: str, session_id: str, key: str) -> StoredReply | None:
        """One ``BatchGetItem`` (the head and the record; a record of another epoch is from before a clear
        or an expiry); a found one needs a ``Query`` of its turn for the reply."""
        check_idempotency_key(key)
        pk = session_pk(actor_id, session_id)
        keys = [self._key(pk, META_SK), self._key(pk, request_sk(key))]
        found: dict[str, dict[str, Any]] = {}
        for attempt in range(8):
            answer = self._client.batch_get_item(RequestItems={self._table: {"Keys": keys, "ConsistentRead": True}})
            for item in answer.get("Responses", {}).get(self._table, []):
                found[item["sk"]["S"]] = item
            keys = answer.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
            if not keys:
                break
            time.sleep(min(1.0, 0.05 * 2 ** attempt))
        else:
            raise StoreUnavailable("dynamodb", "read throttled: keys left unprocessed")
        head_item, record_item = found.get(META_SK), found.get(request_sk(key))
        if head_item is None or record_item is None:
            return None
        head, record = Head.from_item(head_item), _Record.from_item(record_item)
        now = time.time()
        if not self._held(pk, head, now) or record.expires_at <= now or record.epoch != head.epoch:
            return None
        return StoredReply(record.count, self._reply(pk, record, actor_id, session_id))

    def _reply(self, pk: str, record: _Record, actor_id: str, session_id: str) -> str:
        """The assistant text of the turn a record names: one ``Query`` of that event's fragments."""
        fragments: dict[tuple[int, int], _Fragment] = {}
        for items in self._query_pages(
                KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={
                    ":pk": _s(pk), ":lo": _s(FragmentKey(record.epoch, record.turn_from, record.event, 0).sk),
                    ":hi": _s(FragmentKey(record.epoch, record.turn_to, record.event, _LAST_PART).sk)}):
            for item in items:
                key = FragmentKey.parse(item["sk"]["S"])
                if key is not None and key.event == record.event:
                    self._collect(fragments, key, item)
        return reply_of([m for f in sorted(fragments.values(), key=lambda f: f.key)
                         for m in self._messages(f, actor_id, session_id)])
