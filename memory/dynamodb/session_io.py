"""What every DynamoDB session operation stands on: the client and table, the heads this process remembers,
reading a session's items, and keeping its fragments' TTL ahead of the session's life."""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from bedrock_agentcore.memory.constants import ConversationalMessage
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import StoreUnavailable
from memory.expiry import DEFAULT_TURN_GRACE
from memory.base import SessionStore, generation_retention, message_from_dict, request_retention
from memory.dynamodb.items import Head, _code, _describe, _Fragment, _n, _s, _Seen, _ttl_stamp, _update
from memory.dynamodb.keys import (
    DEFAULT_TABLE, HEADS_REMEMBERED, META_SK, TTL_ATTRIBUTE, TURN_PREFIX, FragmentKey,
)

logger = logging.getLogger(__name__)


class SessionItems(SessionStore):
    """The store's state and its item-level reads and writes; ``DynamoDBStore`` builds the contract on them."""

    def __init__(self, client: Any, table: str = DEFAULT_TABLE, *, ttl: int | None = None,
                 turn_grace: float = DEFAULT_TURN_GRACE) -> None:
        """Use ``client`` (a boto3 DynamoDB client; ``make_client`` builds one) on ``table``.

        ``turn_grace``: the longest a turn takes from its ``load_window`` to its write (``memory.expiry``).
        """
        self._client = client
        self._table = table
        self._ttl = ttl
        #: how long a turn's load holds the session (``memory.expiry``)
        self._hold = max(ttl, turn_grace) if ttl is not None else None
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

    # -- what this process remembers -----------------------------------------------------------

    @contextmanager
    def _session_lock(self, pk: str) -> Iterator[None]:
        """Writers of one session in this process take turns: conditional writes only race across processes."""
        with self._locks[hash(pk) % len(self._locks)]:
            yield

    def _remember(self, pk: str, head: Head | None, live_at: float | None = None) -> None:
        """The head as last read or written. Anything but a turn's load keeps the load's ``live_at`` while the
        head is of the same life (same epoch): a write never cuts short the hold of a turn in progress."""
        with self._heads_lock:
            seen = self._seen_again(self._heads.get(pk), head)
            self._heads[pk] = _Seen(head, live_at if live_at is not None else seen.live_at)
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

    @staticmethod
    def _seen_again(old: _Seen | None, head: Head | None) -> _Seen:
        """``head`` read anew, with the ``live_at`` of a turn's load that ``old`` remembers in the same life."""
        same_life = old is not None and old.head is not None and head is not None and old.head.epoch == head.epoch
        return _Seen(head, old.live_at if same_life and old is not None else None)

    def _live(self, seen: _Seen, now: float) -> bool:
        """Whether a write now continues the session's life: not expired, or loaded by a turn of this process
        that holds it (``memory.expiry``: the load restarted the expiry for max(SESSION_TTL, turn grace); the
        write's condition proves the head is still of the life it loaded)."""
        head = seen.head
        if head is None:
            return False
        if not head.expired(now):
            return True
        return self._hold is not None and seen.live_at is not None and now < seen.live_at + self._hold

    def _held(self, pk: str, head: Head | None, now: float) -> bool:
        """``_live`` for a head just read: what this process remembers of the session counts too."""
        return self._live(self._seen_again(self._remembered(pk), head), now)

    def _writer_generation(self, seen: _Seen, now: float) -> int:
        """The generation a write now stores under: one past the stored one once a life of turns expired
        (``memory.expiry``; a head that never held a turn, or a tombstone, keeps its generation)."""
        head = seen.head
        if head is None:
            return 0
        if self._live(seen, now) or head.turns == 0:
            return head.generation
        return head.generation + 1

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
                    if not self._held(pk, head, now) or (k is not None and k <= 0):
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

    def _keep_fragments_alive(self, pk: str, actor_id: str, session_id: str, head: Head, now: float) -> None:
        """Re-stamp every fragment when the session's life slid past the earliest of theirs. Best effort:
        the write is stored; on failure the next one tries again."""
        if self._ttl is not None:
            if head.items_expire_at is None or head.live_until is None or head.items_expire_at >= head.live_until:
                return
            target: int | None = _ttl_stamp(now + 2 * (self._hold or self._ttl))
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
