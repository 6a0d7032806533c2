"""DynamoDB store: one table, shared by every replica, conditional writes, one ``Query`` per window read.

Item layout (``pk`` and ``sk`` are strings; ``<a>``/``<s>`` are the actor and session ids)::

    pk = "<len a>:<a>:<len s>:<s>"                      every item of one session (length-prefixed ids,
                                                         so no two (actor, session) pairs share a pk)
    sk = "turn#meta"                                     the session's head: counters, generation, summary,
                                                         expiry, first message, listing keys
    sk = "turn#<epoch:13>#<turn:12>#<event:12>#<part:3>" one fragment: the messages one add_turns call
                                                         stored for one turn (JSON, split in parts of at
                                                         most 350 KB so no item nears DynamoDB's 400 KB)
    sk = "idem#<sha-256 of the key>"                     an idempotency record: the count of the turn stored
                                                         under that key and where its fragments are

``turn#meta`` sorts after every fragment, so ``Query(begins_with(sk, "turn#"),
ScanIndexForward=False, Limit=k+1)`` returns the head and then the k newest
turns: ``load_window`` is one ``Query`` whose cost depends on k, never on the
session's length, and the head it starts with carries the generation and the
count. The head holds ``epoch`` (when this life of the session began, in ms),
``generation``, ``turns``, ``users``, ``events``, the rolling summary,
``first_message``, ``updated_at`` (the last turn written) and, while the session
holds turns, ``actor_key``: the ``sessions_by_actor`` index (``actor_key`` +
``updated_at``) lists an actor's sessions newest first without a Scan. With
``SESSION_TTL``, ``live_until`` is the end of the session's life (checked at read
time) and ``expires_at`` DynamoDB's TTL attribute (when an item may be reclaimed).

- ``add_turns`` is one ``TransactWriteItems``: the head is updated on the
  condition that ``epoch`` and ``events`` are still what the writer read, and
  the fragments (and, with an idempotency key, the record, on the condition that
  no live record of this life holds the key) are put with it. A writer that lost
  the race gets the current head back (``ReturnValuesOnConditionCheckFailure``)
  and tries again, so concurrent writers (threads, processes, replicas) get
  distinct, gap-free counts and a turn is stored whole or not at all. The head
  seen by the last read (or write) of the session in this process is
  remembered, so a plain turn costs two calls: the ``Query`` and the transaction.
- **Generations.** ``delete_session`` turns the head into a tombstone in one
  ``UpdateItem``: ``generation + 1``, a new epoch, no counters, no summary, no
  ``actor_key`` (unlisted), reclaimed ``max(SESSION_TTL, 7 days)`` later. Every
  delete starts a new epoch, so a writer's exact-head condition also pins the
  generation: a turn loaded before the clear is refused (``SessionChanged``).
  The old items are deleted after the tombstone; until then they are of an
  older epoch, which no read returns.
- **Idempotency.** A record is valid while it is within its retention
  (``SESSION_TTL``, else 24 h; ``expires_at``, also checked at read time) and of
  the head's current epoch: a clear or an expiry invalidates every record at
  once, before (or without) their deletion. ``find_request`` reads the head and
  the record in one ``BatchGetItem``.
- A session that expired starts a new epoch when written again; fragments of
  an older epoch are never read (they sort below the current ones and are
  reclaimed by TTL or ``delete_session``).
- Fragments get ``expires_at`` = write time + 2 x ``SESSION_TTL``; the head
  records the earliest (``items_expire_at``). When the session's life slides
  past it, every fragment is re-stamped (at most once per TTL of activity), so
  DynamoDB never deletes a turn of a live session.
- ``SESSION_TTL`` counts from the last activity: a write, or a turn's
  ``load_window``. To keep a plain turn at two calls, ``load_window`` writes the
  new ``live_until`` (one ``UpdateItem``) only once less than half of the TTL is
  left; a turn that stores within ``SESSION_TTL`` of its own ``load_window``
  finds its session alive either way (the process remembers when it loaded it,
  and the write's exact-head condition proves nothing happened since).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import boto3
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import AlreadyStored, BadRequest, ConfigError, InvalidCursor, SessionChanged, StoreUnavailable
from memory.base import (
    HistoryPage, SessionInfo, SessionPage, SessionStore, StoredEvent, StoredReply, Summary, Turn, Window,
    check_idempotency_key, check_messages, clip_first_message, decode_cursor, generation_retention, group_turns,
    history_bounds, history_page, history_turn, message_from_dict, message_to_dict, page_sessions, reply_of,
    request_retention, unavailable_on,
)

logger = logging.getLogger(__name__)

DEFAULT_TABLE = "agentcore-sessions"
TURN_PREFIX = "turn#"
META_SK = "turn#meta"
REQUEST_PREFIX = "idem#"
ACTOR_INDEX = "sessions_by_actor"
TTL_ATTRIBUTE = "expires_at"
#: what ``list_sessions`` reads from the index (besides its keys): projected into it
INDEX_ATTRIBUTES = ("session_id", "users", "live_until", "first_message")
#: the bytes of JSON one item holds: with its keys and counters an item stays far below DynamoDB's 400 KB
PART_BYTES = 350_000
#: TransactWriteItems holds at most 100 items and 4 MB: the head, the idempotency record (if any), fragments
TRANSACTION_ITEMS = 100
MAX_WRITE_BYTES = 3_500_000
#: conditional writes lost to other writers before a request gives up with a 503
WRITE_ATTEMPTS = 25
#: the head seen by a window read answers ``get_summary`` in the same thread for this long
WINDOW_SUMMARY_SECONDS = 1.0
HEADS_REMEMBERED = 4096
#: expired sessions one ``list_sessions`` call takes out of the actor index (best effort, once each)
UNLIST_PER_CALL = 25
_LAST_EVENT = 10**12 - 1
_LAST_PART = 999
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


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


def request_sk(key: str) -> str:
    """An idempotency record's sort key: a digest, so any key (any length, any characters) fits."""
    return REQUEST_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


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


def _number(item: dict[str, Any], name: str) -> float | None:
    return float(item[name]["N"]) if name in item and "N" in item[name] else None


@dataclass(frozen=True)
class Head:
    """The session's ``turn#meta`` item as read."""

    epoch: int
    generation: int = 0
    turns: int = 0
    users: int = 0
    events: int = 0
    #: SESSION_TTL: the end of the session's life (None: it does not expire)
    live_until: float | None = None
    items_expire_at: float | None = None
    summary: Summary | None = None

    def expired(self, now: float) -> bool:
        return self.live_until is not None and self.live_until <= now

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Head:
        summary = None
        if "summary" in item and "summary_through" in item:
            summary = Summary(item["summary"]["S"], int(item["summary_through"]["N"]))
        return cls(int(_number(item, "epoch") or 0), int(_number(item, "generation") or 0),
                   int(_number(item, "turns") or 0), int(_number(item, "users") or 0),
                   int(_number(item, "events") or 0), _number(item, "live_until"),
                   _number(item, "items_expire_at"), summary)


@dataclass(frozen=True)
class _Seen:
    """A head this process read or wrote; ``live_at``: when a turn's ``load_window`` found it alive."""

    head: Head | None
    live_at: float | None = None


@dataclass(frozen=True)
class _Record:
    """An idempotency record: the count of the turn stored under the key and where that turn's fragments are."""

    count: int
    epoch: int
    event: int
    turn_from: int
    turn_to: int
    expires_at: float

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> _Record:
        return cls(int(_number(item, "count") or 0), int(_number(item, "epoch") or 0),
                   int(_number(item, "event") or 0), int(_number(item, "turn_from") or 0),
                   int(_number(item, "turn_to") or 0), _number(item, TTL_ATTRIBUTE) or 0.0)


@dataclass
class _Fragment:
    key: FragmentKey
    parts: int
    starts_turn: bool
    timestamp: float
    bodies: dict[int, str]


@dataclass(frozen=True)
class _Write:
    """One planned ``add_turns``: the transaction and the head it leaves."""

    head: Head
    actions: list[dict[str, Any]]
    #: the idempotency record's place in ``actions`` (None: no key)
    record_index: int | None


def _n(value: float | int) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _ttl_stamp(at: float) -> int:
    """DynamoDB's TTL attribute is whole epoch seconds: rounded up, never before ``at``."""
    return math.ceil(at)


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


def _cancellation_reasons(e: ClientError) -> list[tuple[str, dict[str, Any] | None]] | None:
    """For a cancelled transaction: each item's reason code and (ALL_OLD) the item as it is; else None."""
    if _code(e) != "TransactionCanceledException":
        return None
    return [(reason.get("Code") or "None", reason.get("Item")) for reason in e.response.get("CancellationReasons") or []]


def _not_issued(cursor: str | None) -> InvalidCursor:
    return InvalidCursor(f"cursor {str(cursor)[:64]!r} is not one this server issued; start again without a cursor")


def _reason(reasons: list[tuple[str, dict[str, Any] | None]], index: int) -> tuple[str, dict[str, Any] | None]:
    return reasons[index] if index < len(reasons) else ("None", None)


def _update(table: str, key: dict[str, Any], sets: list[str], removes: list[str], condition: str | None,
            names: dict[str, str], values: dict[str, Any]) -> dict[str, Any]:
    """UpdateItem parameters with only the names and values the expressions use (DynamoDB refuses others)."""
    expression = ("SET " + ", ".join(sets) if sets else "") + (" REMOVE " + ", ".join(removes) if removes else "")
    used = set(re.findall(r"[#:][A-Za-z_]+", f"{expression} {condition or ''}"))
    params: dict[str, Any] = {"TableName": table, "Key": key, "UpdateExpression": expression.strip(),
                              "ExpressionAttributeNames": {k: v for k, v in names.items() if k in used}}
    used_values = {k: v for k, v in values.items() if k in used}
    if used_values:
        params["ExpressionAttributeValues"] = used_values
    if condition:
        params["ConditionExpression"] = condition
    return params


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
                           "NonKeyAttributes": list(INDEX_ATTRIBUTES)},
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
    else:
        projection = index.get("Projection", {})
        missing = [] if projection.get("ProjectionType") == "ALL" else \
            sorted(set(INDEX_ATTRIBUTES) - set(projection.get("NonKeyAttributes", [])))
        if missing:
            problems.append(f"index {ACTOR_INDEX!r} does not project {', '.join(missing)}")
    return problems


# -- the store ------------------------------------------------------------------------------------

class DynamoDBStore(SessionStore):
    name = "dynamodb"

    def __init__(self, client: Any, table: str = DEFAULT_TABLE, *, ttl: int | None = None) -> None:
        """Use ``client`` (a boto3 DynamoDB client; ``make_client`` builds one) on ``table``."""
        self._client = client
        self._table = table
        self._ttl = ttl
        self._generation_ttl = generation_retention(ttl)
        self._request_retention = request_retention(ttl)
        self._heads: collections.OrderedDict[str, _Seen] = collections.OrderedDict()
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
                if _code(e) != "ResourceNotFoundException":
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
            ttl = self._client.describe_time_to_live(TableName=self._table)["TimeToLiveDescription"]
            enabled = ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and \
                ttl.get("AttributeName") == TTL_ATTRIBUTE
            if not enabled and self._ttl is not None:
                raise ConfigError(f"{name}: SESSION_TTL is set but the table's TTL is not enabled on "
                                  f"{TTL_ATTRIBUTE!r} ({ttl.get('TimeToLiveStatus', 'DISABLED')})")
            if not enabled:
                logger.warning("table=<%s> | TTL is not enabled on %r: idempotency records and the tombstones of "
                               "cleared sessions are ignored once past their time but never reclaimed",
                               self._table, TTL_ATTRIBUTE)
        except (ClientError, BotoCoreError) as e:
            raise ConfigError(f"{name} cannot be checked: {_describe(e)}") from e

    # -- what this process remembers -----------------------------------------------------------

    @contextmanager
    def _session_lock(self, pk: str) -> Iterator[None]:
        """Writers of one session in this process take turns: conditional writes only race across processes."""
        with self._locks[hash(pk) % len(self._locks)]:
            yield

    def _remember(self, pk: str, head: Head | None, live_at: float | None = None) -> None:
        """The head as last read or written. A read that is not a turn's load keeps the load's ``live_at``
        while the head is the same one (same life, no write since)."""
        with self._heads_lock:
            old = self._heads.get(pk)
            if live_at is None and old is not None and old.head is not None and head is not None and \
                    (old.head.epoch, old.head.events) == (head.epoch, head.events):
                live_at = old.live_at
            self._heads[pk] = _Seen(head, live_at)
            self._heads.move_to_end(pk)
            while len(self._heads) > HEADS_REMEMBERED:
                self._heads.popitem(last=False)

    def _forget(self, pk: str) -> None:
        with self._heads_lock:
            self._heads.pop(pk, None)
        if getattr(self._window, "pk", None) == pk:
            self._window.pk = None

    def _remembered(self, pk: str) -> _Seen | None:
        with self._heads_lock:
            return self._heads.get(pk)

    def _live(self, seen: _Seen, now: float) -> bool:
        """Whether a write now continues the session's life: not expired, or loaded by a turn of this process
        less than SESSION_TTL ago (that load restarted the expiry; the write's condition proves the head is
        still the one it loaded)."""
        head = seen.head
        if head is None:
            return False
        if not head.expired(now):
            return True
        return self._ttl is not None and seen.live_at is not None and now < seen.live_at + self._ttl

    # -- reads -----------------------------------------------------------------------------------

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

    @staticmethod
    def _collect(fragments: dict[tuple[int, int], _Fragment], key: FragmentKey, item: dict[str, Any]) -> _Fragment:
        """Add one fragment item (one part of one event's messages for one turn) to ``fragments``."""
        fragment = fragments.setdefault((key.turn, key.event), _Fragment(
            key, int(item.get("parts", {"N": "1"})["N"]), bool(item.get("starts_turn", {}).get("BOOL")),
            float(item.get("ts", {"N": "0"})["N"]), {}))
        fragment.bodies[key.part] = item.get("body", {}).get("S", "")
        return fragment

    def _read(self, pk: str, k: int | None) -> tuple[Head | None, list[_Fragment]]:
        """The head as stored and, while it is live, the fragments of its epoch newest first: all of them, or
        enough for k whole turns. One ``Query`` of k+1 items for a window of k one-item turns."""
        head: Head | None = None
        fragments: dict[tuple[int, int], _Fragment] = {}
        whole_turns = 0
        now = time.time()
        for items in self._session_items(pk, None if k is None else max(k, 0) + 1):
            for item in items:
                sk = item["sk"]["S"]
                if head is None:
                    if sk != META_SK:
                        return None, []  # fragments without a head: leftovers of a session gone
                    head = Head.from_item(item)
                    if head.expired(now) or (k is not None and k <= 0):
                        return head, []
                    continue
                key = FragmentKey.parse(sk)
                if key is None or key.epoch != head.epoch:
                    return head, list(fragments.values())  # an older life of the session: not ours
                fragment = self._collect(fragments, key, item)
                if key.part == 0 and fragment.starts_turn:
                    whole_turns += 1
            if head is None:
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

    def _by_turn(self, fragments: list[_Fragment], actor_id: str,
                 session_id: str) -> dict[int, tuple[list[ConversationalMessage], float | None]]:
        """Messages per turn position, oldest first, with the time the turn's first message was written
        (None: the turn's start is not among ``fragments``)."""
        turns: dict[int, tuple[list[ConversationalMessage], float | None]] = {}
        for fragment in sorted(fragments, key=lambda f: f.key):
            messages, started = turns.setdefault(fragment.key.turn, ([], None))
            messages.extend(self._messages(fragment, actor_id, session_id))
            if fragment.starts_turn and started is None:
                turns[fragment.key.turn] = (messages, fragment.timestamp)
        return dict(sorted(turns.items()))

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
        which restarts the session's expiry (a second call, only once less than half of the TTL is left)."""
        pk = session_pk(actor_id, session_id)
        head, fragments = self._read(pk, k)
        now = time.time()
        live_at = None
        if head is not None and not head.expired(now) and touch and self._ttl is not None:
            head = self._touch(pk, actor_id, session_id, head, now)
            live_at = now
        self._remember(pk, head, live_at)
        self._window.pk, self._window.head, self._window.at = pk, head, time.monotonic()
        if head is None:
            return Window([], 0, 0)
        if head.expired(now):
            return Window([], head.generation, 0)
        whole = [(messages, started) for messages, started in
                 self._by_turn(fragments, actor_id, session_id).values() if started is not None]
        # (a turn whose every message was damaged is left out)
        return Window([messages for messages, _ in whole[-k:] if messages] if k > 0 else [], head.generation,
                      head.users)

    def _touch(self, pk: str, actor_id: str, session_id: str, head: Head, now: float) -> Head:
        """Restart the session's expiry for a turn in progress; skipped while more than half of it is left."""
        assert self._ttl is not None
        if head.live_until is None or head.live_until - now >= self._ttl / 2:
            return head
        live_until = now + self._ttl
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
        head, fragments = self._read(session_pk(actor_id, session_id), None)
        if head is None or head.expired(time.time()):
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
        if head is None or head.expired(time.time()):
            return None
        return head.summary

    @_unavailable
    def get_history(self, actor_id: str, session_id: str, limit: int, before: int | None = None) -> HistoryPage:
        """Two calls: ``GetItem`` of the head (its epoch and counts), then a ``Query`` of the page's turns only."""
        pk = session_pk(actor_id, session_id)
        head = self._read_head(pk)
        if head is None or head.expired(time.time()) or head.turns == 0:
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
        if head.expired(now) or record.expires_at <= now or record.epoch != head.epoch:
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

    # -- the contract: writes --------------------------------------------------------------------

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
            seen = self._remembered(pk)
            if seen is None or (generation is not None and self._generation(seen.head) != generation):
                seen = _Seen(self._read_head(pk))  # nothing remembered, or what is may be stale
            for attempt in range(WRITE_ATTEMPTS):
                if generation is not None and self._generation(seen.head) != generation:
                    self._remember(pk, seen.head)
                    raise SessionChanged()
                now = time.time()
                write = self._plan_write(pk, actor_id, session_id, seen, now, groups, parts, idempotency_key)
                try:
                    self._client.transact_write_items(TransactItems=write.actions)
                except ClientError as e:
                    reasons = _cancellation_reasons(e)
                    if reasons is None:
                        raise
                    code, item = _reason(reasons, 0)
                    if code == "ConditionalCheckFailed":  # another writer got there first: here is the head now
                        seen = _Seen(Head.from_item(item) if item else None)
                        continue
                    if write.record_index is not None:
                        code, item = _reason(reasons, write.record_index)
                        if code == "ConditionalCheckFailed":  # the key is recorded in this life
                            self._remember(pk, seen.head, seen.live_at)
                            record = _Record.from_item(item or self._client.get_item(
                                TableName=self._table, Key=self._key(pk, request_sk(idempotency_key or "")),
                                ConsistentRead=True).get("Item", {}))
                            raise AlreadyStored(record.count, self._reply(pk, record, actor_id, session_id))
                    if any(code == "TransactionConflict" for code, _ in reasons):  # a transaction in flight: wait
                        time.sleep(random.uniform(0.005, 0.02 * (attempt + 1)))
                        continue
                    raise
                self._remember(pk, write.head)
                if getattr(self._window, "pk", None) == pk:
                    self._window.pk = None
                logger.debug("actor_id=<%s> | session_id=<%s> | stored %d messages, count %d",
                             actor_id, session_id, len(messages), write.head.users)
                self._keep_fragments_alive(pk, actor_id, session_id, write.head, now)
                return write.head.users
        self._forget(pk)
        raise StoreUnavailable("dynamodb", f"{WRITE_ATTEMPTS} conditional writes on one session lost to other "
                                           "writers; try again")

    @staticmethod
    def _generation(head: Head | None) -> int:
        return head.generation if head is not None else 0

    def _plan_write(self, pk: str, actor_id: str, session_id: str, seen: _Seen, now: float,
                    groups: list[list[ConversationalMessage]], parts: list[list[str]], key: str | None) -> _Write:
        """The transaction that appends ``groups`` after the head as seen, and the head it leaves."""
        head = seen.head
        live = self._live(seen, now)
        if live:
            assert head is not None
            base = head
        else:  # a new session, or a new life of an expired one (under the same generation)
            base = Head(max(int(now * 1000), head.epoch + 1 if head is not None else 0), self._generation(head))
        event = base.events + 1
        item_expiry = _ttl_stamp(now + 2 * self._ttl) if self._ttl is not None else None
        puts, turn_from, turns, users = self._fragment_puts(pk, base, event, groups, parts, now, item_expiry)
        items_expire_at = base.items_expire_at
        if item_expiry is not None and (items_expire_at is None or not live):
            items_expire_at = item_expiry
        new_head = Head(base.epoch, base.generation, turns, users, event,
                        now + self._ttl if self._ttl is not None else None, items_expire_at,
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

    def _keep_fragments_alive(self, pk: str, actor_id: str, session_id: str, head: Head, now: float) -> None:
        """Re-stamp every fragment when the session's life slid past the earliest of theirs. Best effort:
        the write is stored; on failure the next one tries again."""
        if self._ttl is not None:
            if head.items_expire_at is None or head.live_until is None or head.items_expire_at >= head.live_until:
                return
            target: int | None = _ttl_stamp(now + 2 * self._ttl)
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
                    stamp = ["#exp = :exp"] if target is not None else []
                    try:
                        self._client.update_item(**_update(
                            self._table, item, stamp, [] if stamp else ["#exp"], "attribute_exists(pk)",
                            {"#exp": TTL_ATTRIBUTE}, {":exp": _n(target)} if target is not None else {}))
                    except ClientError as e:
                        if _code(e) != "ConditionalCheckFailedException":
                            raise
                    restamped += 1
            self._client.update_item(**_update(
                self._table, self._key(pk, META_SK), ["#iexp = :iexp"] if target is not None else [],
                [] if target is not None else ["#iexp"], "#epoch = :epoch",
                {"#epoch": "epoch", "#iexp": "items_expire_at"},
                {":epoch": _n(head.epoch), **({":iexp": _n(target)} if target is not None else {})}))
            self._remember(pk, replace(head, items_expire_at=target))
            logger.info("actor_id=<%s> | session_id=<%s> | re-stamped the expiry of %d items",
                        actor_id, session_id, restamped)
        except (ClientError, BotoCoreError) as e:
            self._forget(pk)
            logger.warning("actor_id=<%s> | session_id=<%s> | items not re-stamped (retried on the next write): %s",
                           actor_id, session_id, _describe(e))

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
        was, and as it is now. The tombstone is reclaimed ``max(SESSION_TTL, 7 days)`` later."""
        epoch = int(now * 1000)
        for _ in range(WRITE_ATTEMPTS):
            try:
                answer = self._client.update_item(**_update(
                    self._table, self._key(pk, META_SK),
                    ["#gen = if_not_exists(#gen, :zero) + :one", "#epoch = :epoch", "#turns = :zero",
                     "#users = :zero", "#events = :zero", "#actor = :actor", "#session = :session", "#exp = :exp"],
                    ["#ak", "#summary", "#through", "#first", "#lu", "#iexp"],
                    "attribute_not_exists(#epoch) OR #epoch < :epoch",
                    {"#gen": "generation", "#epoch": "epoch", "#turns": "turns", "#users": "users",
                     "#events": "events", "#actor": "actor_id", "#session": "session_id", "#exp": TTL_ATTRIBUTE,
                     "#ak": "actor_key", "#summary": "summary", "#through": "summary_through",
                     "#first": "first_message", "#lu": "live_until", "#iexp": "items_expire_at"},
                    {":zero": _n(0), ":one": _n(1), ":epoch": _n(epoch), ":actor": _s(actor_id),
                     ":session": _s(session_id), ":exp": _n(_ttl_stamp(now + self._generation_ttl))}),
                    ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD")
            except ClientError as e:
                if _code(e) != "ConditionalCheckFailedException":
                    raise
                # the stored epoch is not older (a clock behind another replica's): one past it
                current = e.response.get("Item") or self._client.get_item(
                    TableName=self._table, Key=self._key(pk, META_SK), ConsistentRead=True).get("Item")
                epoch = (Head.from_item(current).epoch if current else epoch) + 1
                continue
            old = Head.from_item(answer["Attributes"]) if answer.get("Attributes") else None
            return old, Head(epoch, self._generation(old) + 1)
        raise StoreUnavailable("dynamodb", "the session kept changing while it was being cleared; try again")

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
