"""The contract's writes on DynamoDB: ``add_turns`` (one transaction), ``delete_session`` (a tombstone, then
the old items) and ``put_summary`` (one conditional update of the head)."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from botocore.exceptions import ClientError

from core.errors import AlreadyStored, BadRequest, SessionChanged, StoreUnavailable
from memory.base import Summary, check_idempotency_key, check_messages, clip_first_message, group_turns, message_to_dict
from memory.expiry import write_expiry
from memory.dynamodb.items import (
    Head, _cancellation_reasons, _code, _n, _number, _reason, _Record, _s, _Seen, _ttl_stamp, _unavailable, _update,
    _Write, split_body,
)
from memory.dynamodb.keys import (
    LOST_RACE_PAUSE, LOST_RACE_PAUSE_CAP, MAX_WRITE_BYTES, META_SK, PART_BYTES, REQUEST_PREFIX, TRANSACTION_ITEMS,
    TTL_ATTRIBUTE, TURN_PREFIX, WRITE_ATTEMPTS, WRITE_PATIENCE, FragmentKey, actor_key, request_sk, session_pk,
)
from memory.dynamodb.session_io import SessionItems

logger = logging.getLogger(__name__)


def write_attempts() -> Iterator[int]:
    """The tries of a conditional write on one session: at least ``WRITE_ATTEMPTS``, and on for up to
    ``WRITE_PATIENCE`` seconds while other writers keep winning.

    A writer that just won knows the head it left and writes its next turn at once, so while it keeps writing,
    a writer that lost learns each new head one write too late and loses again. Counting tries alone let
    such a streak run out the count (a 503 for a turn nobody had rejected); the patience outlasts the streak.
    """
    give_up_at = time.monotonic() + WRITE_PATIENCE
    attempt = 0
    while attempt < WRITE_ATTEMPTS or time.monotonic() < give_up_at:
        yield attempt
        attempt += 1


def pause_after_lost_race(attempt: int) -> bool:
    """Wait before the next try of a conditional write that lost to another writer; whether it waited.

    The first retry goes at once, with the head the cancellation handed back. After that, writers colliding on
    one session wait a random time that doubles with each loss (full jitter, capped), which takes them out of
    step; the head they hold is old by then and is read again.
    """
    if attempt == 0:
        return False
    time.sleep(random.uniform(0, min(LOST_RACE_PAUSE_CAP, LOST_RACE_PAUSE * 2 ** attempt)))
    return True


class SessionWrites(SessionItems):
    """The write half of the contract."""

    @_unavailable
    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage], *,
                  generation: int | None = None, idempotency_key: str | None = None) -> int:
        check_messages(messages)
        check_idempotency_key(idempotency_key)
        groups = group_turns(messages)
        bodies = [json.dumps([message_to_dict(m) for m in group], ensure_ascii=False) for group in groups]
        size = sum(len(b.encode()) for b in bodies)
        if size > MAX_WRITE_BYTES:
            raise BadRequest(f"the turn is too large for the dynamodb session store: {size:,} bytes of JSON, "
                             f"at most {MAX_WRITE_BYTES:,} per write (one DynamoDB transaction)")
        parts = [split_body(b) for b in bodies]
        room = TRANSACTION_ITEMS - 1 - (1 if idempotency_key is not None else 0)
        if sum(len(p) for p in parts) > room:
            raise ValueError(f"add_turns on dynamodb stores at most {room} items per call (one transaction); "
                             f"split {len(groups)} turns into smaller calls")
        pk = session_pk(actor_id, session_id)
        with self._session_lock(pk):
            remembered = self._remembered(pk)
            seen = remembered
            if seen is None or (generation is not None and self._writer_generation(seen, time.time()) != generation):
                # nothing remembered, or what is may be stale (a turn's load this process remembers still counts)
                seen = self._seen_again(remembered, self._read_head(pk))
            for attempt in write_attempts():
                now = time.time()
                if generation is not None and self._writer_generation(seen, now) != generation:
                    self._remember(pk, seen.head)
                    raise SessionChanged()
                write = self._plan_write(pk, actor_id, session_id, seen, now, groups, parts, idempotency_key)
                try:
                    self._client.transact_write_items(TransactItems=write.actions)
                except ClientError as e:
                    reasons = _cancellation_reasons(e)
                    if reasons is None:
                        raise
                    code, item = _reason(reasons, 0)
                    if code == "ConditionalCheckFailed":  # another writer got there first: here is the head now
                        seen = self._seen_again(seen, Head.from_item(item) if item else None)
                        if pause_after_lost_race(attempt):
                            seen = self._seen_again(seen, self._read_head(pk))
                        continue
                    if write.record_index is not None:
                        code, item = _reason(reasons, write.record_index)
                        if code == "ConditionalCheckFailed":  # the key is recorded in this life
                            self._remember(pk, seen.head, seen)
                            record = _Record.from_item(item or self._client.get_item(
                                TableName=self._table, Key=self._key(pk, request_sk(idempotency_key or "")),
                                ConsistentRead=True).get("Item", {}))
                            raise AlreadyStored(record.count, self._reply(pk, record, actor_id, session_id))
                    if any(code == "TransactionConflict" for code, _ in reasons):  # a transaction in flight: wait
                        pause_after_lost_race(attempt + 1)
                        continue
                    raise
                others = max(0, self._holds(seen, now) - 1)  # this turn's hold ends (memory.expiry)
                self._remember(pk, write.head, _Seen(write.head, seen.live_at if others else None, others))
                if getattr(self._window, "pk", None) == pk:
                    self._window.pk = None
                logger.debug("actor_id=<%s> | session_id=<%s> | stored %d messages, count %d",
                             actor_id, session_id, len(messages), write.head.users)
                self._keep_fragments_alive(pk, actor_id, session_id, write.head, now)
                return write.head.users
        self._forget(pk)
        raise StoreUnavailable("dynamodb", f"conditional writes on one session lost to other writers for "
                                           f"{WRITE_PATIENCE:g} s; try again")

    @staticmethod
    def _generation(head: Head | None) -> int:
        return head.generation if head is not None else 0

    @staticmethod
    def _expired_life(head: Head | None, now: float) -> bool:
        """A stored life of turns past its end: its generation already counts as moved on."""
        return head is not None and head.expired(now) and head.turns > 0

    def _plan_write(self, pk: str, actor_id: str, session_id: str, seen: _Seen, now: float,
                    groups: list[list[ConversationalMessage]], parts: list[list[str]], key: str | None) -> _Write:
        """The transaction that appends ``groups`` after the head as seen, and the head it leaves."""
        head = seen.head
        live = self._live(seen, now)
        if live:
            assert head is not None
            base = head
        else:  # a new session, or a new life of an expired one (under the next generation: memory.expiry)
            base = Head(max(int(now * 1000), head.epoch + 1 if head is not None else 0),
                        self._writer_generation(seen, now))
        event = base.events + 1
        item_expiry = _ttl_stamp(now + 2 * (self._hold or self._ttl)) if self._ttl is not None else None
        puts, turn_from, turns, users = self._fragment_puts(pk, base, event, groups, parts, now, item_expiry)
        items_expire_at = base.items_expire_at
        if item_expiry is not None and (items_expire_at is None or not live):
            items_expire_at = item_expiry
        new_head = Head(base.epoch, base.generation, turns, users, event,
                        write_expiry(now, self._ttl, base.live_until if live and self._holds(seen, now) > 1 else None)
                        if self._ttl is not None else None, items_expire_at,
                        base.summary if live else None)
        first = next((m.text for group in groups for m in group if m.role == MessageRole.USER), None)
        actions: list[dict[str, Any]] = [{"Update": self._head_update(
            pk, actor_id, session_id, head, new_head, now, new_life=not live, first_message=first)}]
        record_index = None
        if key is not None:
            record_index = len(actions)
            actions.append({"Put": self._record_put(pk, key, new_head, turn_from, now)})
        return _Write(new_head, actions + puts, record_index)

    def _fragment_puts(self, pk: str, base: Head, event: int, groups: list[list[ConversationalMessage]],
                       parts: list[list[str]], now: float,
                       item_expiry: int | None) -> tuple[list[dict[str, Any]], int, int, int]:
        """One ``Put`` per part of each turn's fragment; the first turn they touch, the turn and user counts after."""
        turns, users = base.turns, base.users
        turn_from = None
        puts: list[dict[str, Any]] = []
        for group, pieces in zip(groups, parts):
            starts_turn = group[0].role == MessageRole.USER or turns == 0
            if starts_turn:
                turns += 1
            turn_from = turns if turn_from is None else turn_from
            users += sum(1 for m in group if m.role == MessageRole.USER)
            for number, piece in enumerate(pieces):
                item = {**self._key(pk, FragmentKey(base.epoch, turns, event, number).sk), "body": _s(piece),
                        "parts": _n(len(pieces)), "starts_turn": {"BOOL": starts_turn}, "ts": _n(now)}
                if item_expiry is not None:
                    item[TTL_ATTRIBUTE] = _n(item_expiry)
                puts.append({"Put": {"TableName": self._table, "Item": item}})
        return puts, turn_from or turns, turns, users

    def _head_update(self, pk: str, actor_id: str, session_id: str, seen: Head | None, new: Head, now: float,
                     *, new_life: bool, first_message: str | None) -> dict[str, Any]:
        """The head's ``Update``: the new counters, on the condition that the head is still ``seen``."""
        names = {"#epoch": "epoch", "#gen": "generation", "#turns": "turns", "#users": "users", "#events": "events",
                 "#updated": "updated_at", "#actor": "actor_id", "#session": "session_id", "#ak": "actor_key",
                 "#lu": "live_until", "#exp": TTL_ATTRIBUTE, "#iexp": "items_expire_at", "#summary": "summary",
                 "#through": "summary_through", "#first": "first_message"}
        values = {":epoch": _n(new.epoch), ":gen": _n(new.generation), ":turns": _n(new.turns),
                  ":users": _n(new.users), ":events": _n(new.events), ":now": _n(now), ":actor": _s(actor_id),
                  ":session": _s(session_id), ":ak": _s(actor_key(actor_id))}
        sets = ["#epoch = :epoch", "#gen = :gen", "#turns = :turns", "#users = :users", "#events = :events",
                "#updated = :now", "#actor = :actor", "#session = :session", "#ak = :ak"]
        removes = []
        if new.live_until is not None and new.items_expire_at is not None:
            values[":lu"], values[":iexp"] = _n(new.live_until), _n(int(new.items_expire_at))
            values[":exp"] = _n(_ttl_stamp(now + self._generation_ttl))
            sets += ["#lu = :lu", "#exp = :exp", "#iexp = :iexp" if new_life else "#iexp = if_not_exists(#iexp, :iexp)"]
        else:  # no SESSION_TTL: the head persists (items_expire_at stays until every fragment is un-stamped)
            removes += ["#lu", "#exp"]
        if first_message is not None:
            values[":first"] = _s(clip_first_message(first_message))
            sets.append("#first = :first" if new_life else "#first = if_not_exists(#first, :first)")
        elif new_life and seen is not None:
            removes.append("#first")
        if new_life and seen is not None:
            removes += ["#summary", "#through"]  # the expired life's summary goes with it
        if seen is None:
            condition = "attribute_not_exists(pk)"
        else:  # exactly the head this write was planned from: same life (so same generation), no event since
            condition = "#epoch = :seen_epoch AND #events = :seen_events"
            values[":seen_epoch"], values[":seen_events"] = _n(seen.epoch), _n(seen.events)
        update = _update(self._table, self._key(pk, META_SK), sets, removes, condition, names, values)
        return {**update, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}

    def _record_put(self, pk: str, key: str, head: Head, turn_from: int, now: float) -> dict[str, Any]:
        """The idempotency record, put unless a live record of this life already holds the key."""
        item = {**self._key(pk, request_sk(key)), "count": _n(head.users), "epoch": _n(head.epoch),
                "event": _n(head.events), "turn_from": _n(turn_from), "turn_to": _n(head.turns),
                "stored_at": _n(now), TTL_ATTRIBUTE: _n(_ttl_stamp(now + self._request_retention))}
        return {"TableName": self._table, "Item": item,
                "ConditionExpression": "attribute_not_exists(pk) OR #exp <= :now OR #epoch <> :epoch",
                "ExpressionAttributeNames": {"#exp": TTL_ATTRIBUTE, "#epoch": "epoch"},
                "ExpressionAttributeValues": {":now": _n(now), ":epoch": _n(head.epoch)},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}

    @_unavailable
    def delete_session(self, actor_id: str, session_id: str) -> int:
        """One ``UpdateItem`` makes the head a tombstone (the clear, atomic for every replica); then the old
        items go: ``Query`` pages of the partition and ``BatchWriteItem`` calls of 25 keys."""
        pk = session_pk(actor_id, session_id)
        with self._session_lock(pk):
            try:
                now = time.time()
                old, tombstone = self._tombstone(pk, actor_id, session_id, now)
                self._remember(pk, tombstone)
            except BaseException:
                self._forget(pk)
                raise
            self._delete_older_items(pk, tombstone.epoch)
        removed = 0 if old is None or old.expired(now) else old.events
        logger.debug("actor_id=<%s> | session_id=<%s> | deleted %d events, generation %d", actor_id, session_id,
                     removed, tombstone.generation)
        return removed

    def _tombstone(self, pk: str, actor_id: str, session_id: str, now: float) -> tuple[Head | None, Head]:
        """Bump the generation, start a new epoch, drop counters, summary, expiry and listing: the head as it
        was, and as it is now. The tombstone is reclaimed ``max(SESSION_TTL, 7 days)`` later. A life of turns
        that expired already moved the generation on (``memory.expiry``): the clear moves it one further."""
        epoch = int(now * 1000)
        remembered = self._remembered(pk)
        expired_life = remembered is not None and self._expired_life(remembered.head, now)
        for attempt in write_attempts():
            # the step is pinned by the condition: a head that is not as assumed comes back and is tried again
            life = "#lu <= :now AND #turns > :zero" if expired_life else \
                "(attribute_not_exists(#lu) OR #lu > :now OR attribute_not_exists(#turns) OR #turns = :zero)"
            try:
                answer = self._client.update_item(**_update(
                    self._table, self._key(pk, META_SK),
                    ["#gen = if_not_exists(#gen, :zero) + :step", "#epoch = :epoch", "#turns = :zero",
                     "#users = :zero", "#events = :zero", "#actor = :actor", "#session = :session", "#exp = :exp"],
                    ["#ak", "#summary", "#through", "#first", "#lu", "#iexp"],
                    f"(attribute_not_exists(#epoch) OR #epoch < :epoch) AND {life}",
                    {"#gen": "generation", "#epoch": "epoch", "#turns": "turns", "#users": "users",
                     "#events": "events", "#actor": "actor_id", "#session": "session_id", "#exp": TTL_ATTRIBUTE,
                     "#ak": "actor_key", "#summary": "summary", "#through": "summary_through",
                     "#first": "first_message", "#lu": "live_until", "#iexp": "items_expire_at"},
                    {":zero": _n(0), ":step": _n(2 if expired_life else 1), ":epoch": _n(epoch), ":now": _n(now),
                     ":actor": _s(actor_id),
                     ":session": _s(session_id), ":exp": _n(_ttl_stamp(now + self._generation_ttl))}),
                    ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD")
            except ClientError as e:
                if _code(e) != "ConditionalCheckFailedException":
                    raise
                # the stored epoch is not older (a clock behind another replica's): one past it; or the life
                # expired (or not) unlike assumed
                current = e.response.get("Item") or self._client.get_item(
                    TableName=self._table, Key=self._key(pk, META_SK), ConsistentRead=True).get("Item")
                head = Head.from_item(current) if current else None
                epoch = max(epoch, head.epoch + 1 if head is not None else epoch)
                expired_life = self._expired_life(head, now)
                pause_after_lost_race(attempt)
                continue
            old = Head.from_item(answer["Attributes"]) if answer.get("Attributes") else None
            return old, Head(epoch, self._generation(old) + (2 if expired_life else 1))
        raise StoreUnavailable("dynamodb", f"the session kept changing while it was being cleared, for "
                                           f"{WRITE_PATIENCE:g} s; try again")

    def _delete_older_items(self, pk: str, epoch: int) -> None:
        """Delete the idempotency records, then the fragments, of every life before ``epoch`` (none of them is
        read any more; a failure leaves them to TTL or to the next clear, and is a 503 all the same)."""
        records: list[dict[str, Any]] = []
        fragments: list[dict[str, Any]] = []
        for items in self._query_pages(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": _s(pk)},
                                       ProjectionExpression="pk, sk, #epoch",
                                       ExpressionAttributeNames={"#epoch": "epoch"}):
            for item in items:
                sk = item["sk"]["S"]
                key = {"pk": item["pk"], "sk": item["sk"]}
                if sk.startswith(REQUEST_PREFIX):
                    if int(_number(item, "epoch") or 0) < epoch:
                        records.append(key)
                elif sk != META_SK:
                    fragment = FragmentKey.parse(sk) if sk.startswith(TURN_PREFIX) else None
                    if fragment is None or fragment.epoch < epoch:
                        fragments.append(key)
        self._delete_items(records + fragments)

    @_unavailable
    def put_summary(self, actor_id: str, session_id: str, summary: Summary, *, generation: int | None = None) -> bool:
        """One conditional ``UpdateItem`` of the head: refused (False) when the session expired, its generation
        moved on, or (checked) it holds fewer turns than the summary covers. It never lists a session, and on
        a tombstone it keeps the generation: a late summary cannot bring a cleared session back."""
        if len(summary.text.encode()) > PART_BYTES:
            raise ValueError(f"a summary holds at most {PART_BYTES:,} bytes")
        pk = session_pk(actor_id, session_id)
        now = time.time()
        names = {"#summary": "summary", "#through": "summary_through", "#epoch": "epoch", "#gen": "generation",
                 "#turns": "turns", "#users": "users", "#events": "events", "#actor": "actor_id",
                 "#session": "session_id", "#lu": "live_until", "#exp": TTL_ATTRIBUTE}
        values = {":text": _s(summary.text), ":through": _n(summary.through_turn), ":now": _n(now),
                  ":epoch": _n(int(now * 1000)), ":zero": _n(0), ":actor": _s(actor_id), ":session": _s(session_id)}
        sets = ["#summary = :text", "#through = :through", "#epoch = if_not_exists(#epoch, :epoch)",
                "#gen = if_not_exists(#gen, :zero)", "#turns = if_not_exists(#turns, :zero)",
                "#users = if_not_exists(#users, :zero)", "#events = if_not_exists(#events, :zero)",
                "#actor = :actor", "#session = :session"]
        if self._ttl is not None:  # a write: the session's life starts again
            sets += ["#lu = :lu", "#exp = :exp"]
            values[":lu"], values[":exp"] = _n(now + self._ttl), _n(_ttl_stamp(now + self._generation_ttl))
        conditions = ["(attribute_not_exists(#lu) OR #lu > :now)"]
        if generation is not None:
            values[":gen"] = _n(generation)
            conditions.append("#gen = :gen" if generation else "(attribute_not_exists(#gen) OR #gen = :gen)")
            if summary.through_turn > 0:
                conditions.append("#users >= :through")
        with self._session_lock(pk):
            try:
                answer = self._client.update_item(**_update(
                    self._table, self._key(pk, META_SK), sets, [], " AND ".join(conditions), names, values),
                    ReturnValues="ALL_NEW")
            except ClientError as e:
                if _code(e) != "ConditionalCheckFailedException":
                    raise
                return False
            head = Head.from_item(answer["Attributes"])
            self._remember(pk, head)
            if getattr(self._window, "pk", None) == pk:
                self._window.pk = None
        self._keep_fragments_alive(pk, actor_id, session_id, head, now)
        return True
