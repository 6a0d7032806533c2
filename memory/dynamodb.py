"""DynamoDB store: one table, shared by every replica, conditional writes, one ``Query`` per history read.

Item layout (``pk`` and ``sk`` are strings; ``<a>``/``<s>`` are the actor and session ids)::

    pk = "<len a>:<a>:<len s>:<s>"                      every item of one session (length-prefixed ids,
                                                         so no two (actor, session) pairs share a pk)
    sk = "turn#meta"                                     the session's head: counters, summary, expiry
    sk = "turn#<epoch:13>#<turn:12>#<event:12>#<part:3>" one fragment: the messages one add_turns call
                                                         stored for one turn (JSON, split in parts of at
                                                         most 350 KB so no item nears DynamoDB's 400 KB)

``turn#meta`` sorts after every fragment, so ``Query(begins_with(sk, "turn#"),
ScanIndexForward=False, Limit=k+1)`` returns the head and then the k newest
turns: the history read is one ``Query`` whose cost depends on k, never on the
session's length. The head carries ``epoch`` (when this life of the session
began, in ms), ``turns``, ``users``, ``events``, the rolling summary, ``updated_at``,
``actor_key`` (the ``sessions_by_actor`` index: an actor's sessions, newest first,
without a Scan) and, with ``SESSION_TTL``, ``expires_at`` (DynamoDB's TTL
attribute, also checked at read time: DynamoDB deletes expired items late).

- ``add_turns`` is one ``TransactWriteItems``: the head is updated on the
  condition that ``epoch`` and ``events`` are still what the writer read, and
  the fragments are put with it. A writer that lost the race gets the current
  head back (``ReturnValuesOnConditionCheckFailure``) and tries again, so
  concurrent writers (threads, processes, replicas) get distinct, gap-free
  counts and a turn is stored whole or not at all. The head seen by the last
  history read (or write) of the session in this process is remembered, so a
  plain turn costs two calls: the ``Query`` and the transaction.
- A session that expired (or was deleted) starts a new epoch; fragments of an
  older epoch are never read (they sort below the current ones and are
  reclaimed by TTL or ``delete_session``).
- Fragments get ``expires_at`` = write time + 2 x ``SESSION_TTL``; the head
  records the earliest (``items_expire_at``). When a write slides the session's
  expiry past it, every fragment is re-stamped (at most once per TTL of
  activity), so DynamoDB never deletes a turn of a live session.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import BadRequest, ConfigError, StoreUnavailable
from memory.base import (
    SessionStore, StoredEvent, Summary, Turn, check_messages, message_from_dict, message_to_dict, unavailable_on,
)

logger = logging.getLogger(__name__)

DEFAULT_TABLE = "agentcore-sessions"
TURN_PREFIX = "turn#"
META_SK = "turn#meta"
ACTOR_INDEX = "sessions_by_actor"
TTL_ATTRIBUTE = "expires_at"
#: the bytes of JSON one item holds: with its keys and counters an item stays far below DynamoDB's 400 KB
PART_BYTES = 350_000
#: TransactWriteItems holds at most 100 items and 4 MB: one is the head, the rest fragments
MAX_WRITE_ITEMS = 99
MAX_WRITE_BYTES = 3_500_000
#: conditional writes lost to other writers before a request gives up with a 503
WRITE_ATTEMPTS = 25
#: the head seen by a history read answers ``get_summary`` in the same thread for this long
WINDOW_SUMMARY_SECONDS = 1.0
HEADS_REMEMBERED = 4096
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0


def _describe(e: Exception) -> str:
    if isinstance(e, ClientError):
        error = e.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', e)}"
    return f"{type(e).__name__}: {e}"


#: anything the service or the network returns after botocore's retries (throttled, endpoint down, no
#: table, no credentials) is a 503 naming the store
_unavailable = unavailable_on("dynamodb", (ClientError, BotoCoreError), _describe)


def session_pk(actor_id: str, session_id: str) -> str:
    """The partition of one session: length-prefixed ids, so distinct pairs never share it."""
    return f"{len(actor_id)}:{actor_id}:{len(session_id)}:{session_id}"


def actor_key(actor_id: str) -> str:
    """The ``sessions_by_actor`` partition of an actor (never empty, as an index key must be)."""
    return f"{len(actor_id)}:{actor_id}"


@dataclass(frozen=True, order=True)
class FragmentKey:
    epoch: int
    turn: int
    event: int
    part: int

    @property
    def sk(self) -> str:
        return f"{TURN_PREFIX}{self.epoch:013d}#{self.turn:012d}#{self.event:012d}#{self.part:03d}"

    @classmethod
    def parse(cls, sk: str) -> FragmentKey | None:
        try:
            epoch, turn, event, part = sk[len(TURN_PREFIX):].split("#")
            return cls(int(epoch), int(turn), int(event), int(part))
        except ValueError:
            return None


@dataclass(frozen=True)
class Head:
    """The session's ``turn#meta`` item as read."""

    epoch: int
    turns: int = 0
    users: int = 0
    events: int = 0
    expires_at: float | None = None
    items_expire_at: float | None = None
    summary: Summary | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Head:
        def number(name: str) -> float | None:
            return float(item[name]["N"]) if name in item else None

        summary = None
        if "summary" in item and "summary_through" in item:
            summary = Summary(item["summary"]["S"], int(item["summary_through"]["N"]))
        return cls(int(number("epoch") or 0), int(number("turns") or 0), int(number("users") or 0),
                   int(number("events") or 0), number(TTL_ATTRIBUTE), number("items_expire_at"), summary)


@dataclass
class _Fragment:
    key: FragmentKey
    parts: int
    starts_turn: bool
    timestamp: float
    bodies: dict[int, str]


def _n(value: float | int) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def split_body(text: str, limit: int = PART_BYTES) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-8 bytes, cut between characters."""
    data = text.encode()
    pieces: list[str] = []
    start = 0
    while start < len(data) or not pieces:
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # never inside a multi-byte character
            end -= 1
        pieces.append(data[start:end].decode())
        start = end
    return pieces


def split_into_turns(messages: Sequence[ConversationalMessage]) -> list[list[ConversationalMessage]]:
    """One group per turn: a new group at each USER message (the first may continue the session's last turn)."""
    groups: list[list[ConversationalMessage]] = []
    for message in messages:
        if message.role == MessageRole.USER or not groups:
            groups.append([])
        groups[-1].append(message)
    return groups


def _cancellation_reason(e: ClientError) -> tuple[str, dict[str, Any] | None] | None:
    """For a cancelled transaction: the head's reason code and the head as it is (ALL_OLD), else None."""
    if e.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return None
    reasons = e.response.get("CancellationReasons") or []
    for index, reason in enumerate(reasons):
        code = reason.get("Code") or "None"
        if code != "None":
            return code, (reason.get("Item") if index == 0 else None)
    return "Unknown", None


# -- the table ------------------------------------------------------------------------------------

def make_client(region_name: str, endpoint_url: str | None = None) -> Any:
    """A DynamoDB client with bounded timeouts and botocore's standard retries (throttling backed off)."""
    return boto3.Session(region_name=region_name).client(
        "dynamodb", endpoint_url=endpoint_url,
        config=Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                      retries={"mode": "standard", "max_attempts": 3}),
    )


def create_table(client: Any, table: str) -> None:
    """Create the table the store expects (on-demand capacity), with its actor index and TTL on ``expires_at``."""
    client.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"},
                              {"AttributeName": "actor_key", "AttributeType": "S"},
                              {"AttributeName": "updated_at", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": ACTOR_INDEX,
            "KeySchema": [{"AttributeName": "actor_key", "KeyType": "HASH"},
                          {"AttributeName": "updated_at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "INCLUDE",
                           "NonKeyAttributes": ["actor_id", "session_id", "users", "events", TTL_ATTRIBUTE]},
        }],
    )
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(TableName=table,
                               TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE})


def schema_problems(description: dict[str, Any]) -> list[str]:
    """What is wrong with a ``DescribeTable`` answer for this store (empty: the table fits)."""
    problems = []
    keys = {k["AttributeName"]: k["KeyType"] for k in description.get("KeySchema", [])}
    types = {a["AttributeName"]: a["AttributeType"] for a in description.get("AttributeDefinitions", [])}
    if keys != {"pk": "HASH", "sk": "RANGE"} or types.get("pk") != "S" or types.get("sk") != "S":
        problems.append(f"key schema is {keys} ({types}), not pk (S, HASH) + sk (S, RANGE)")
    indexes = {i["IndexName"]: i for i in description.get("GlobalSecondaryIndexes", [])}
    index = indexes.get(ACTOR_INDEX)
    if index is None:
        problems.append(f"global secondary index {ACTOR_INDEX!r} is missing")
    elif {k["AttributeName"]: k["KeyType"] for k in index["KeySchema"]} != {"actor_key": "HASH",
                                                                            "updated_at": "RANGE"}:
        problems.append(f"index {ACTOR_INDEX!r} is not actor_key (HASH) + updated_at (RANGE)")
    return problems


# -- the store ------------------------------------------------------------------------------------

class DynamoDBStore(SessionStore):
    name = "dynamodb"

    def __init__(self, client: Any, table: str = DEFAULT_TABLE, *, ttl: int | None = None) -> None:
        """Use ``client`` (a boto3 DynamoDB client; ``make_client`` builds one) on ``table``."""
        self._client = client
        self._table = table
        self._ttl = ttl
        self._heads: collections.OrderedDict[str, Head | None] = collections.OrderedDict()
        self._heads_lock = threading.Lock()
        self._locks = [threading.Lock() for _ in range(64)]
        self._window = threading.local()

    @property
    def client(self) -> Any:
        return self._client

    @property
    def table(self) -> str:
        return self._table

    def check_table(self, *, create: bool = False) -> None:
        """Start-up: the table exists (or is created) and has the store's schema; else ``ConfigError``, one line."""
        name = f"DYNAMODB_TABLE={self._table!r}"
        try:
            try:
                description = self._client.describe_table(TableName=self._table)["Table"]
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                if not create:
                    raise ConfigError(f"{name} does not exist (create it with `python -m memory.dynamodb "
                                      f"create-table` or DYNAMODB_CREATE_TABLE=on)") from e
                logger.info("table=<%s> | creating the session table", self._table)
                create_table(self._client, self._table)
                description = self._client.describe_table(TableName=self._table)["Table"]
            problems = schema_problems(description)
            if problems:
                raise ConfigError(f"{name} does not have the session store's schema: {'; '.join(problems)}")
            if self._ttl is not None:
                ttl = self._client.describe_time_to_live(TableName=self._table)["TimeToLiveDescription"]
                if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or \
                        ttl.get("AttributeName") != TTL_ATTRIBUTE:
                    raise ConfigError(f"{name}: SESSION_TTL is set but the table's TTL is not enabled on "
                                      f"{TTL_ATTRIBUTE!r} ({ttl.get('TimeToLiveStatus', 'DISABLED')})")
        except (ClientError, BotoCoreError) as e:
            raise ConfigError(f"{name} cannot be checked: {_describe(e)}") from e

    # -- helpers ---------------------------------------------------------------------------------

    @contextmanager
    def _session_lock(self, pk: str) -> Iterator[None]:
        """Writers of one session in this process take turns: conditional writes only race across processes."""
        with self._locks[hash(pk) % len(self._locks)]:
            yield

    def _remember(self, pk: str, head: Head | None) -> None:
        with self._heads_lock:
            self._heads[pk] = head
            self._heads.move_to_end(pk)
            while len(self._heads) > HEADS_REMEMBERED:
                self._heads.popitem(last=False)

    def _forget(self, pk: str) -> None:
        with self._heads_lock:
            self._heads.pop(pk, None)
        if getattr(self._window, "pk", None) == pk:
            self._window.pk = None

    def _remembered(self, pk: str) -> tuple[bool, Head | None]:
        with self._heads_lock:
            if pk in self._heads:
                return True, self._heads[pk]
        return False, None

    def _key(self, pk: str, sk: str) -> dict[str, Any]:
        return {"pk": _s(pk), "sk": _s(sk)}

    def _read_head(self, pk: str) -> Head | None:
        item = self._client.get_item(TableName=self._table, Key=self._key(pk, META_SK),
                                     ConsistentRead=True).get("Item")
        return Head.from_item(item) if item else None

    def _query_pages(self, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        kwargs = {"TableName": self._table, "ConsistentRead": True, **kwargs}
        while True:
            page = self._client.query(**kwargs)
            yield page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _session_items(self, pk: str, limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """The head, then the fragments newest first, page by page."""
        extra = {"Limit": limit} if limit is not None else {}
        return self._query_pages(KeyConditionExpression="pk = :pk AND begins_with(sk, :turn)",
                                 ExpressionAttributeValues={":pk": _s(pk), ":turn": _s(TURN_PREFIX)},
                                 ScanIndexForward=False, **extra)

    def _read(self, pk: str, k: int | None) -> tuple[Head | None, list[_Fragment]]:
        """The live head and the fragments of its epoch, newest first: all of them, or enough for k whole turns."""
        head: Head | None = None
        fragments: dict[tuple[int, int], _Fragment] = {}
        whole_turns = 0
        now = time.time()
        for items in self._session_items(pk, None if k is None else k + 1):
            for item in items:
                sk = item["sk"]["S"]
                if head is None:
                    if sk != META_SK:
                        self._remember(pk, None)
                        return None, []  # fragments without a head: leftovers of a deleted session
                    head = Head.from_item(item)
                    self._remember(pk, head)
                    if head.expired(now):
                        return None, []
                    continue
                key = FragmentKey.parse(sk)
                if key is None or key.epoch != head.epoch:
                    return head, list(fragments.values())  # an older life of the session: not ours
                fragment = fragments.setdefault((key.turn, key.event), _Fragment(
                    key, int(item.get("parts", {"N": "1"})["N"]), bool(item.get("starts_turn", {}).get("BOOL")),
                    float(item.get("ts", {"N": "0"})["N"]), {}))
                fragment.bodies[key.part] = item.get("body", {}).get("S", "")
                if key.part == 0 and fragment.starts_turn:
                    whole_turns += 1
            if head is None:
                self._remember(pk, None)  # no session: the write after this read needs no read of its own
                return None, []
            if k is not None and whole_turns >= k:
                break
        return head, list(fragments.values())

    def _messages(self, fragment: _Fragment, actor_id: str, session_id: str) -> list[ConversationalMessage]:
        if sorted(fragment.bodies) != list(range(fragment.parts)):
            logger.warning("actor_id=<%s> | session_id=<%s> | skipping turn %d event %d: %d of %d parts found",
                           actor_id, session_id, fragment.key.turn, fragment.key.event, len(fragment.bodies),
                           fragment.parts)
            return []
        try:
            data = json.loads("".join(fragment.bodies[p] for p in range(fragment.parts)))
            if not isinstance(data, list):
                raise ValueError("not a list of messages")
        except ValueError as e:
            logger.warning("actor_id=<%s> | session_id=<%s> | skipping a stored fragment that is not valid: %s",
                           actor_id, session_id, e)
            return []
        return [m for m in (message_from_dict(d) for d in data) if m is not None]

    # -- the contract --------------------------------------------------------------------------

    @_unavailable
    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        if k <= 0:
            return []
        pk = session_pk(actor_id, session_id)
        head, fragments = self._read(pk, k)
        self._window.pk, self._window.head, self._window.at = pk, head, time.monotonic()
        turns: dict[int, list[ConversationalMessage]] = {}
        whole: set[int] = set()
        for fragment in sorted(fragments, key=lambda f: f.key):
            turns.setdefault(fragment.key.turn, []).extend(self._messages(fragment, actor_id, session_id))
            if fragment.starts_turn:
                whole.add(fragment.key.turn)
        newest = sorted(t for t in turns if t in whole)[-k:]
        return [turns[t] for t in newest if turns[t]]  # (a turn whose every message was damaged is left out)

    @_unavailable
    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        _, fragments = self._read(session_pk(actor_id, session_id), None)
        events: dict[int, StoredEvent] = {}
        for fragment in sorted(fragments, key=lambda f: f.key):
            event = events.setdefault(fragment.key.event,
                                      StoredEvent(str(fragment.key.event), [], fragment.timestamp))
            event.messages.extend(self._messages(fragment, actor_id, session_id))
        return [events[e] for e in sorted(events)]

    @_unavailable
    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage]) -> int:
        check_messages(messages)
        groups = split_into_turns(messages)
        bodies = [json.dumps([message_to_dict(m) for m in group], ensure_ascii=False) for group in groups]
        size = sum(len(b.encode()) for b in bodies)
        if size > MAX_WRITE_BYTES:
            raise BadRequest(f"the turn is too large for the dynamodb session store: {size:,} bytes of JSON, "
                             f"at most {MAX_WRITE_BYTES:,} per write (one DynamoDB transaction)")
        parts = [split_body(b) for b in bodies]
        if sum(len(p) for p in parts) > MAX_WRITE_ITEMS:
            raise ValueError(f"add_turns on dynamodb stores at most {MAX_WRITE_ITEMS} items per call "
                             f"(one transaction); split {len(groups)} turns into smaller calls")
        pk = session_pk(actor_id, session_id)
        with self._session_lock(pk):
            known, head = self._remembered(pk)
            if not known:
                head = self._read_head(pk)
            for attempt in range(WRITE_ATTEMPTS):
                now = time.time()
                new_head, actions = self._plan_write(pk, actor_id, session_id, head, now, groups, parts)
                try:
                    self._client.transact_write_items(TransactItems=actions)
                except ClientError as e:
                    reason = _cancellation_reason(e)
                    if reason is None:
                        raise
                    code, item = reason
                    if code == "ConditionalCheckFailed":  # another writer got there first: here is the head now
                        head = Head.from_item(item) if item else None
                    elif code == "TransactionConflict":  # another transaction on the head in flight: wait
                        time.sleep(random.uniform(0.005, 0.02 * (attempt + 1)))
                    else:
                        raise
                    continue
                self._remember(pk, new_head)
                if getattr(self._window, "pk", None) == pk:
                    self._window.pk = None
                logger.debug("actor_id=<%s> | session_id=<%s> | stored %d messages, count %d",
                             actor_id, session_id, len(messages), new_head.users)
                self._keep_fragments_alive(pk, actor_id, session_id, new_head, now)
                return new_head.users
        self._forget(pk)
        raise StoreUnavailable("dynamodb", f"{WRITE_ATTEMPTS} conditional writes on one session lost to other "
                                           "writers; try again")

    def _plan_write(self, pk: str, actor_id: str, session_id: str, head: Head | None, now: float,
                    groups: list[list[ConversationalMessage]], parts: list[list[str]]) -> tuple[Head, list[dict]]:
        """The transaction that appends ``groups`` after ``head`` (as read), and the head it leaves."""
        live = head is not None and not head.expired(now)
        if live:
            assert head is not None
            base = head
        else:  # a new session, or a new life of an expired one
            base = Head(max(int(now * 1000), head.epoch + 1 if head is not None else 0))
        event = base.events + 1
        item_expiry = int(now + 2 * self._ttl) if self._ttl is not None else None
        puts, turns, users = self._fragment_puts(pk, base, event, groups, parts, now, item_expiry)
        items_expire_at = base.items_expire_at
        if item_expiry is not None and (items_expire_at is None or not live):
            items_expire_at = item_expiry
        new_head = Head(base.epoch, turns, users, event, float(int(now + self._ttl)) if self._ttl else None,
                        items_expire_at, base.summary if live else None)
        update = self._head_update(pk, actor_id, session_id, head, new_head, now, new_life=not live)
        return new_head, [{"Update": update}, *puts]

    def _fragment_puts(self, pk: str, base: Head, event: int, groups: list[list[ConversationalMessage]],
                       parts: list[list[str]], now: float,
                       item_expiry: int | None) -> tuple[list[dict[str, Any]], int, int]:
        """One ``Put`` per part of each turn's fragment; and the turn and user counts after them."""
        turns, users = base.turns, base.users
        puts: list[dict[str, Any]] = []
        for group, pieces in zip(groups, parts):
            starts_turn = group[0].role == MessageRole.USER or turns == 0
            if starts_turn:
                turns += 1
            users += sum(1 for m in group if m.role == MessageRole.USER)
            for number, piece in enumerate(pieces):
                item = {**self._key(pk, FragmentKey(base.epoch, turns, event, number).sk), "body": _s(piece),
                        "parts": _n(len(pieces)), "starts_turn": {"BOOL": starts_turn}, "ts": _n(now)}
                if item_expiry is not None:
                    item[TTL_ATTRIBUTE] = _n(item_expiry)
                puts.append({"Put": {"TableName": self._table, "Item": item}})
        return puts, turns, users

    def _head_update(self, pk: str, actor_id: str, session_id: str, seen: Head | None, new: Head, now: float,
                     *, new_life: bool) -> dict[str, Any]:
        """The head's ``Update``: the new counters, on the condition that the head is still ``seen``."""
        names = {"#epoch": "epoch", "#turns": "turns", "#users": "users", "#events": "events",
                 "#updated": "updated_at", "#actor": "actor_id", "#session": "session_id", "#ak": "actor_key",
                 "#exp": TTL_ATTRIBUTE, "#iexp": "items_expire_at", "#summary": "summary",
                 "#through": "summary_through"}
        values = {":epoch": _n(new.epoch), ":turns": _n(new.turns), ":users": _n(new.users),
                  ":events": _n(new.events), ":now": _n(now), ":actor": _s(actor_id), ":session": _s(session_id),
                  ":ak": _s(actor_key(actor_id))}
        sets = ["#epoch = :epoch", "#turns = :turns", "#users = :users", "#events = :events",
                "#updated = :now", "#actor = :actor", "#session = :session", "#ak = :ak"]
        removes = []
        if new.expires_at is not None and new.items_expire_at is not None:
            values[":exp"], values[":iexp"] = _n(int(new.expires_at)), _n(int(new.items_expire_at))
            sets += ["#exp = :exp", "#iexp = :iexp" if new_life else "#iexp = if_not_exists(#iexp, :iexp)"]
        else:
            removes.append("#exp")  # (items_expire_at stays until every fragment is un-stamped)
        if new_life and seen is not None:
            removes += ["#summary", "#through"]  # the expired life's summary goes with it
        if seen is None:
            condition = "attribute_not_exists(pk)"
        else:  # exactly the head this write was planned from: same life, no event written since
            condition = "#epoch = :seen_epoch AND #events = :seen_events"
            values[":seen_epoch"], values[":seen_events"] = _n(seen.epoch), _n(seen.events)
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        used = set(re.findall(r"[#:][a-z_]+", f"{expression} {condition}"))  # DynamoDB refuses unused ones
        return {"TableName": self._table, "Key": self._key(pk, META_SK), "UpdateExpression": expression,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {k: v for k, v in names.items() if k in used},
                "ExpressionAttributeValues": {k: v for k, v in values.items() if k in used},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}

    def _keep_fragments_alive(self, pk: str, actor_id: str, session_id: str, head: Head, now: float) -> None:
        """Re-stamp every fragment when the session's expiry slid past the earliest of theirs. Best effort:
        the turn is stored; on failure the next write tries again."""
        if self._ttl is not None:
            if head.items_expire_at is None or head.items_expire_at >= now + self._ttl:
                return
            target: int | None = int(now + 2 * self._ttl)
        elif head.items_expire_at is not None:
            target = None  # SESSION_TTL was switched off: the fragments must not expire either
        else:
            return
        try:
            restamped = 0
            prefix = f"{TURN_PREFIX}{head.epoch:013d}#"
            for items in self._query_pages(KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                                           ExpressionAttributeValues={":pk": _s(pk), ":p": _s(prefix)},
                                           ProjectionExpression="pk, sk"):
                for item in items:
                    update: dict[str, Any] = {"TableName": self._table, "Key": item,
                                              "ConditionExpression": "attribute_exists(pk)",
                                              "ExpressionAttributeNames": {"#exp": TTL_ATTRIBUTE}}
                    if target is None:
                        update["UpdateExpression"] = "REMOVE #exp"
                    else:
                        update["UpdateExpression"] = "SET #exp = :exp"
                        update["ExpressionAttributeValues"] = {":exp": _n(target)}
                    try:
                        self._client.update_item(**update)
                    except ClientError as e:
                        if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                            raise
                    restamped += 1
            meta: dict[str, Any] = {"TableName": self._table, "Key": self._key(pk, META_SK),
                                    "ConditionExpression": "#epoch = :epoch",
                                    "ExpressionAttributeNames": {"#epoch": "epoch", "#iexp": "items_expire_at"},
                                    "ExpressionAttributeValues": {":epoch": _n(head.epoch)}}
            if target is None:
                meta["UpdateExpression"] = "REMOVE #iexp"
            else:
                meta["UpdateExpression"] = "SET #iexp = :iexp"
                meta["ExpressionAttributeValues"][":iexp"] = _n(target)
            self._client.update_item(**meta)
            self._remember(pk, Head(head.epoch, head.turns, head.users, head.events, head.expires_at, target,
                                    head.summary))
            logger.info("actor_id=<%s> | session_id=<%s> | re-stamped the expiry of %d items",
                        actor_id, session_id, restamped)
        except (ClientError, BotoCoreError) as e:
            self._forget(pk)
            logger.warning("actor_id=<%s> | session_id=<%s> | items not re-stamped (retried on the next write): %s",
                           actor_id, session_id, _describe(e))

    @_unavailable
    def delete_session(self, actor_id: str, session_id: str) -> int:
        pk = session_pk(actor_id, session_id)
        with self._session_lock(pk):
            try:
                for _ in range(WRITE_ATTEMPTS):
                    head: Head | None = None
                    keys: list[dict[str, Any]] = []
                    for items in self._query_pages(KeyConditionExpression="pk = :pk",
                                                   ExpressionAttributeValues={":pk": _s(pk)}):
                        for item in items:
                            if item["sk"]["S"] == META_SK:
                                head = Head.from_item(item)
                            else:
                                keys.append({"pk": item["pk"], "sk": item["sk"]})
                    self._delete_items(keys)
                    if head is None:
                        return 0
                    try:  # the head last, and only if no writer added an event since it was read
                        self._client.delete_item(
                            TableName=self._table, Key=self._key(pk, META_SK),
                            ConditionExpression="#epoch = :epoch AND #events = :events",
                            ExpressionAttributeNames={"#epoch": "epoch", "#events": "events"},
                            ExpressionAttributeValues={":epoch": _n(head.epoch), ":events": _n(head.events)})
                    except ClientError as e:
                        if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                            continue
                        raise
                    removed = 0 if head.expired(time.time()) else head.events
                    logger.debug("actor_id=<%s> | session_id=<%s> | deleted %d events", actor_id, session_id,
                                 removed)
                    return removed
            finally:
                self._forget(pk)
        raise StoreUnavailable("dynamodb", "the session kept changing while it was being deleted; try again")

    def _delete_items(self, keys: list[dict[str, Any]]) -> None:
        """BatchWriteItem, 25 keys a call; what DynamoDB leaves unprocessed is sent again (a few times)."""
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": key}} for key in keys[start:start + 25]]
            for attempt in range(8):
                left = self._client.batch_write_item(RequestItems={self._table: requests}).get(
                    "UnprocessedItems", {}).get(self._table)
                if not left:
                    break
                requests = left
                time.sleep(min(1.0, 0.05 * 2 ** attempt))
            else:
                raise StoreUnavailable("dynamodb", "delete throttled: items left unprocessed")

    @_unavailable
    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        pk = session_pk(actor_id, session_id)
        window = self._window
        if getattr(window, "pk", None) == pk and time.monotonic() - window.at <= WINDOW_SUMMARY_SECONDS:
            window.pk = None  # the head the history read just returned: one call less per turn
            head = window.head
        else:
            head = self._read_head(pk)
        if head is None or head.expired(time.time()):
            return None
        return head.summary

    @_unavailable
    def put_summary(self, actor_id: str, session_id: str, summary: Summary) -> None:
        if len(summary.text.encode()) > PART_BYTES:
            raise ValueError(f"a summary holds at most {PART_BYTES:,} bytes")
        pk = session_pk(actor_id, session_id)
        now = time.time()
        names = {"#summary": "summary", "#through": "summary_through", "#epoch": "epoch", "#exp": TTL_ATTRIBUTE,
                 "#actor": "actor_id", "#session": "session_id", "#ak": "actor_key", "#updated": "updated_at"}
        values = {":text": _s(summary.text), ":through": _n(summary.through_turn), ":now": _n(now),
                  ":epoch": _n(int(now * 1000)), ":actor": _s(actor_id), ":session": _s(session_id),
                  ":ak": _s(actor_key(actor_id))}
        names.update({"#turns": "turns", "#users": "users", "#events": "events"})
        values[":zero"] = _n(0)
        sets = ["#summary = :text", "#through = :through", "#epoch = if_not_exists(#epoch, :epoch)",
                "#turns = if_not_exists(#turns, :zero)", "#users = if_not_exists(#users, :zero)",
                "#events = if_not_exists(#events, :zero)", "#actor = :actor", "#session = :session", "#ak = :ak",
                "#updated = if_not_exists(#updated, :now)"]
        if self._ttl is not None:
            sets.append("#exp = :exp")
            values[":exp"] = _n(int(now + self._ttl))
        with self._session_lock(pk):
            self._forget(pk)
            for _ in range(WRITE_ATTEMPTS):
                try:  # a live (or new) session: the summary joins its head
                    self._client.update_item(
                        TableName=self._table, Key=self._key(pk, META_SK),
                        UpdateExpression="SET " + ", ".join(sets),
                        ConditionExpression="attribute_not_exists(pk) OR attribute_not_exists(#exp) OR #exp > :now",
                        ExpressionAttributeNames=names, ExpressionAttributeValues=values)
                    return
                except ClientError as e:
                    if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                        raise
                if self._new_life_with_summary(pk, actor_id, session_id, summary, now):
                    return
        raise StoreUnavailable("dynamodb", "the session kept changing while its summary was written; try again")

    def _new_life_with_summary(self, pk: str, actor_id: str, session_id: str, summary: Summary, now: float) -> bool:
        """The session expired: its new life starts with this summary and nothing else (False: it came alive)."""
        head = self._read_head(pk)
        epoch = max(int(now * 1000), head.epoch + 1 if head is not None else 0)
        item = {**self._key(pk, META_SK), "summary": _s(summary.text), "summary_through": _n(summary.through_turn),
                "epoch": _n(epoch), "turns": _n(0), "users": _n(0), "events": _n(0), "updated_at": _n(now),
                "actor_id": _s(actor_id), "session_id": _s(session_id), "actor_key": _s(actor_key(actor_id))}
        if self._ttl is not None:
            item[TTL_ATTRIBUTE] = _n(int(now + self._ttl))
        try:
            self._client.put_item(TableName=self._table, Item=item,
                                  ConditionExpression="attribute_exists(#exp) AND #exp <= :now",
                                  ExpressionAttributeNames={"#exp": TTL_ATTRIBUTE},
                                  ExpressionAttributeValues={":now": _n(now)})
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True


# -- the command line: create the table ------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """``python -m memory.dynamodb create-table``: create (or check) the table from the environment's settings."""
    from core.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m memory.dynamodb", description=main.__doc__)
    parser.add_argument("command", choices=["create-table", "check-table"])
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        store = DynamoDBStore(make_client(settings.aws_region, settings.dynamodb_endpoint_url),
                              settings.dynamodb_table, ttl=settings.session_ttl)
        store.check_table(create=args.command == "create-table")
    except ConfigError as e:
        print(f"configuration error: {e.message}")
        return 2
    print(f"table {settings.dynamodb_table!r} is ready: pk + sk, index {ACTOR_INDEX!r}, TTL on {TTL_ATTRIBUTE!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
