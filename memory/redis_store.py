"""Redis store: shared by every replica, sliding ``SESSION_TTL``, one Lua script per session operation.

Keys of one session (``<a>``/``<s>`` are the actor and session ids, each
length-prefixed, so no two (actor, session) pairs can produce the same key,
whatever characters the ids contain)::

    <KEY_PREFIX>{<len a>:<a>:<len s>:<s>}:meta     hash: user_messages, expires_at, last_write
    <KEY_PREFIX>{...}:msgs                          list: one JSON message per entry, oldest first
    <KEY_PREFIX>{...}:turns                         list: offset into msgs where each turn starts
    <KEY_PREFIX>{...}:events                        list: "<offset into msgs> <timestamp>" per add_turns call
    <KEY_PREFIX>{...}:summary                       hash: text, through
    <KEY_PREFIX>{...}:reqs                          hash: idempotency key -> "<stored at> <count> <offset> <n>"
    <KEY_PREFIX>{...}:reqtimes                      sorted set: idempotency key by when it was stored
    <KEY_PREFIX>{...}:gen                           the generation; ``delete_session`` INCRs it and never deletes it
    <KEY_PREFIX>{<len a>:<a>}:sessions              sorted set: the actor's session ids by last write

The ``{...}`` hash tag keeps a session's keys in one Redis Cluster slot, so the
scripts below may touch all of them: with ``REDIS_CLUSTER=on`` the store talks
through redis-py's ``RedisCluster``, which sends each script to the node that
owns the session's slot. Every session operation is one script (``memory/lua/<name>.lua``,
loaded by ``memory.redis_scripts``):

- ``add_turns`` checks the generation and the idempotency key, appends the
  messages, the turn starts and the event and bumps the user-message counter
  in one script: atomic for every client, thread, process and replica, so
  concurrent writers get distinct, gap-free counts and a turn begun before a
  clear is refused.
- ``load_window`` / ``get_last_k_turns`` read the generation, the count, the k
  newest turn offsets (``LRANGE turns -k -1``) and then only the messages from
  there to the end: the cost depends on k, never on the session's length.
- With a TTL every write (and, holding the session for the turn, a turn's
  ``load_window``: ``memory.expiry``) sets ``EXPIRE`` on every key of the session
  (sliding expiry, never shortened) and records ``expires_at``; reads treat a
  session past ``expires_at`` as gone even before Redis has reclaimed it, so
  expiry is exact whatever Redis' eviction timing. Without a TTL the keys persist.
  The ``gen`` tombstone lives ``max(SESSION_TTL, 7 days)`` after the last write;
  with a TTL it also records when the session's life of turns ends
  (``"<generation> <expires_at>"``), so a life that expired, even once Redis has
  reclaimed its keys, moves the generation on when the session id comes back.

The per-actor index is the only structure outside the session's slot (it has a
hash tag of its own). On a single Redis server ``add_turns`` updates it in the
same script (one command); with a ``RedisCluster`` client the update is a
second small script on the index's node, sent once the turn is stored (so a
refused write never reorders the listing). ``list_sessions`` skips (and
unlists) ids whose session is gone, so an update lost in between only delays
the listing until the session's next write.

Scripts run by their SHA, and on ``NOSCRIPT`` (a restarted or flushed node) by
their text on the node that owns the keys: never ``SCRIPT LOAD``, which a cluster
client sends to every primary (one primary down would fail every session). In a
pipeline (``delete_session``, ``list_sessions``) a single server gets ``EVALSHA``
and the calls a ``NOSCRIPT`` failed are sent again as ``EVAL``; a cluster
pipeline gets ``EVAL`` from the start (redis-py refuses ``EVALSHA`` there: a
node may lack the script). ``NOSCRIPT`` means nothing ran, so sending the
script again is never a second write.
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException
from redis.retry import Retry

from core.errors import AlreadyStored, SessionChanged
from memory.base import (
    HistoryPage, SessionInfo, SessionPage, SessionStore, StoredEvent, StoredReply, Summary, Turn, Window,
    after_cursor, check_idempotency_key, check_messages, clip_first_message, decode_cursor, generation_retention,
    history_page, history_turn, message_from_dict, message_from_fields, message_to_dict, page_sessions, reply_of,
    request_retention, unavailable_on,
)
from memory.expiry import DEFAULT_TURN_GRACE
from memory.redis_scripts import (
    ADD_TURNS, DELETE, FIND_REQUEST, GET_SUMMARY, HISTORY, INDEX_TOUCH, LIST_EVENTS, LOAD_WINDOW, PUT_SUMMARY,
    SESSION_INFO, UNLIST, SessionScript,
)

logger = logging.getLogger(__name__)


DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "agentcore:"
#: seconds to connect and to wait for any reply; a down or hung Redis fails the request within these bounds
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0

_SUFFIXES = ("meta", "msgs", "turns", "events", "summary")
_REQUEST_SUFFIXES = ("reqs", "reqtimes")

#: any Redis failure (refused, timed out, OOM, read-only replica, a cluster with no reachable node or
#: uncovered slots...) is a 503 naming the store
_unavailable = unavailable_on("redis", (redis.RedisError, RedisClusterException))


def session_key(prefix: str, actor_id: str, session_id: str) -> str:
    """The key stem of one session: length-prefixed ids, so distinct pairs never share a key."""
    return f"{prefix}{{{len(actor_id)}:{actor_id}:{len(session_id)}:{session_id}}}"


@functools.lru_cache(maxsize=4096)
def _session_keys(prefix: str, actor_id: str, session_id: str) -> tuple[str, ...]:
    """Every key of one session, in the order the scripts take them (cached: built on every call otherwise)."""
    stem = session_key(prefix, actor_id, session_id)
    return tuple(f"{stem}:{suffix}" for suffix in (*_SUFFIXES, *_REQUEST_SUFFIXES, "gen"))


def actor_index_key(prefix: str, actor_id: str) -> str:
    """The actor's session index: a hash tag of its own (``{<len>:<actor>}`` is never a session's tag)."""
    return f"{prefix}{{{len(actor_id)}:{actor_id}}}:sessions"


def _parse(raw: bytes | str, actor_id: str, session_id: str) -> ConversationalMessage | None:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, TypeError) as e:
        logger.warning("actor_id=<%s> | session_id=<%s> | skipping a stored message that is not valid JSON: %s",
                       actor_id, session_id, e)
        return None
    if isinstance(data, dict):
        return message_from_fields(data.get("role"), data.get("text"))
    return message_from_dict(data)


def _parse_all(raws: Sequence[bytes | str], actor_id: str, session_id: str) -> list[ConversationalMessage]:
    return [m for m in (_parse(r, actor_id, session_id) for r in raws) if m is not None]


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisStore(SessionStore):
    name = "redis"

    def __init__(self, client: redis.Redis | RedisCluster, *, key_prefix: str = DEFAULT_PREFIX, ttl: int | None = None,
                 owns_client: bool = False, index_in_script: bool | None = None,
                 turn_grace: float = DEFAULT_TURN_GRACE) -> None:
        """Use ``client`` (injected; it is closed by ``close`` only when ``owns_client``).

        ``turn_grace``: the longest a turn takes from its ``load_window`` to its write (``memory.expiry``).

        ``index_in_script``: update the actor's session index inside ``add_turns``' script (one
        command) rather than with a second script after it. Default: in the script unless
        ``client`` is a ``RedisCluster``, where the index's slot differs from the session's.
        """
        self._redis = client
        self._index_in_script = (not isinstance(client, RedisCluster)) if index_in_script is None else index_in_script
        self._prefix = key_prefix
        self._ttl = ttl
        self._turn_grace = turn_grace
        self._generation_ttl = generation_retention(ttl)
        self._request_retention = request_retention(ttl)
        self._index_ttl = "" if ttl is None else str(self._generation_ttl)  # without a TTL the index persists
        self._owns_client = owns_client
        self._add_turns = SessionScript(client, ADD_TURNS)
        self._load_window = SessionScript(client, LOAD_WINDOW)
        self._find_request = SessionScript(client, FIND_REQUEST)
        self._list_events = SessionScript(client, LIST_EVENTS)
        self._delete = SessionScript(client, DELETE)
        self._get_summary = SessionScript(client, GET_SUMMARY)
        self._put_summary = SessionScript(client, PUT_SUMMARY)
        self._history = SessionScript(client, HISTORY)
        self._session_info = SessionScript(client, SESSION_INFO)
        self._index_touch = SessionScript(client, INDEX_TOUCH)
        self._unlist = SessionScript(client, UNLIST)

    @classmethod
    def from_url(cls, url: str = DEFAULT_URL, *, key_prefix: str = DEFAULT_PREFIX, ttl: int | None = None,
                 socket_timeout: float = SOCKET_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 cluster: bool = False, turn_grace: float = DEFAULT_TURN_GRACE) -> RedisStore:
        """A client with bounded timeouts; options in the URL's query (``?socket_timeout=0.5``) win.

        A connection that breaks (Redis restarted) is retried once on a fresh
        connection, so the store recovers by itself; a timeout is not retried,
        so a hung Redis fails the request within ``socket_timeout``.

        ``cluster`` (``REDIS_CLUSTER=on``): ``url`` names any node of a Redis
        Cluster. redis-py's ``RedisCluster`` reads the slot map from it now
        (``StoreUnavailable`` when no node answers), follows ``MOVED`` and
        refreshes the map when a node fails; a command is retried once (a
        retried ``add_turns`` is recognised by its write token, so it is never
        stored twice).
        """
        if cluster:
            return cls(cls._cluster_client(url, socket_timeout, connect_timeout), key_prefix=key_prefix, ttl=ttl,
                       owns_client=True, turn_grace=turn_grace)
        client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1, supported_errors=(redis.ConnectionError,)),
            retry_on_timeout=False,
        )
        return cls(client, key_prefix=key_prefix, ttl=ttl, owns_client=True, turn_grace=turn_grace)

    @staticmethod
    @_unavailable
    def _cluster_client(url: str, socket_timeout: float, connect_timeout: float) -> RedisCluster:
        return RedisCluster.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        )

    def close(self) -> None:
        if self._owns_client:
            self._redis.close()

    # -- keys ----------------------------------------------------------------------------------

    def keys(self, actor_id: str, session_id: str) -> list[str]:
        """The keys of the session's turns and summary (``delete_session`` removes these and ``request_keys``)."""
        return list(_session_keys(self._prefix, actor_id, session_id)[:5])

    def request_keys(self, actor_id: str, session_id: str) -> list[str]:
        """The keys of the session's idempotency records (present once a turn was stored with a key)."""
        return list(_session_keys(self._prefix, actor_id, session_id)[5:7])

    def generation_key(self, actor_id: str, session_id: str) -> str:
        """The session's generation: the one key ``delete_session`` keeps (and increments)."""
        return _session_keys(self._prefix, actor_id, session_id)[7]

    def index_key(self, actor_id: str) -> str:
        return actor_index_key(self._prefix, actor_id)

    def _all_keys(self, actor_id: str, session_id: str) -> list[str]:
        return list(_session_keys(self._prefix, actor_id, session_id))

    # -- helpers -------------------------------------------------------------------------------

    def _ttl_args(self, now: float) -> list[str]:
        """A write's expiry: ``SESSION_TTL`` seconds, and the instant it ends."""
        if self._ttl is None:
            return ["", ""]
        return [str(self._ttl), repr(now + self._ttl)]

    def _hold_args(self, now: float) -> list[str]:
        """A turn's load: it holds the session ``max(SESSION_TTL, turn_grace)`` seconds (``memory.expiry``)."""
        if self._ttl is None:
            return ["", ""]
        hold = math.ceil(max(self._ttl, self._turn_grace))
        return [str(hold), repr(now + hold)]

    def _pipelined(self, calls: Sequence[tuple[SessionScript, list[str], list[Any]]], *,
                   raise_on_error: bool = True) -> list[Any]:
        """Several scripts in one round trip, each on its own keys (in a cluster: each on its slot's node).

        ``EVALSHA`` straight into a non-transactional pipeline; the calls a ``NOSCRIPT`` failed (Redis
        restarted, ``SCRIPT FLUSH``) go again as ``EVAL`` in a second one. A cluster pipeline gets
        ``EVAL`` from the start: redis-py refuses ``EVALSHA`` there (a node may lack the script).
        ``raise_on_error=False``: a failed call's exception is its result.
        """
        by_text = isinstance(self._redis, RedisCluster)
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        while pending:
            pipe = self._redis.pipeline(transaction=False)
            for i in pending:
                script, keys, args = calls[i]
                # (ClusterPipeline has no usable eval(): the command itself)
                pipe.execute_command(*(("EVAL", script.text) if by_text else ("EVALSHA", script.sha)),
                                     len(keys), *keys, *args)
            for i, result in zip(pending, pipe.execute(raise_on_error=False)):
                results[i] = result
            pending = [] if by_text else [i for i in pending if isinstance(results[i], NoScriptError)]
            by_text = True
        for result in results:
            if raise_on_error and isinstance(result, Exception):
                raise result
        return results

    # -- writes --------------------------------------------------------------------------------

    @_unavailable
    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage], *,
                  generation: int | None = None, idempotency_key: str | None = None) -> int:
        check_messages(messages)
        check_idempotency_key(idempotency_key)
        now = time.time()
        index_args = [self._index_ttl, repr(now - self._generation_ttl), session_id]
        args: list[Any] = [
            repr(now), *self._ttl_args(now), uuid.uuid4().hex, "" if generation is None else str(generation),
            idempotency_key or "", repr(now - self._request_retention), self._generation_ttl, *index_args,
        ]
        for message in messages:
            args += [message.role.value, json.dumps(message_to_dict(message), ensure_ascii=False)]
        keys = self._all_keys(actor_id, session_id)
        if self._index_in_script:
            result = self._add_turns(keys=[*keys, self.index_key(actor_id)], args=args)
        else:  # Redis Cluster: the index lives in another slot; it is updated once the turn is stored
            result = self._add_turns(keys=keys, args=args)
            if not isinstance(result, list):
                self._touch_index(actor_id, session_id, [repr(now), *index_args])
        if isinstance(result, list):
            if result[0] == b"changed":
                raise SessionChanged()
            raise AlreadyStored(int(result[1]), reply_of(_parse_all(result[2], actor_id, session_id)))
        count = int(result)
        logger.debug("actor_id=<%s> | session_id=<%s> | stored %d messages, count %d",
                     actor_id, session_id, len(messages), count)
        return count

    def _touch_index(self, actor_id: str, session_id: str, args: list[Any]) -> None:
        """Redis Cluster: list the session once its turn is stored. Best effort: the turn is stored and
        acknowledged even when the index's node is down (the session is listed again on its next write)."""
        try:
            self._index_touch(keys=[self.index_key(actor_id)], args=args)
        except (redis.RedisError, RedisClusterException) as e:
            logger.warning("actor_id=<%s> | session_id=<%s> | turn stored, actor index not updated: %s",
                           actor_id, session_id, e)

    @_unavailable
    def delete_session(self, actor_id: str, session_id: str) -> int:
        now = time.time()
        removed, unlisted = self._pipelined([
            (self._delete, self._all_keys(actor_id, session_id), [repr(now), self._generation_ttl]),
            (self._unlist, [self.index_key(actor_id)], [session_id, repr(now)]),
        ], raise_on_error=False)
        if isinstance(removed, Exception):
            raise removed
        if isinstance(unlisted, Exception):  # (cluster: the index's node) deleted all the same; listing skips it
            logger.warning("actor_id=<%s> | session_id=<%s> | session deleted, actor index not updated: %s",
                           actor_id, session_id, unlisted)
        logger.debug("actor_id=<%s> | session_id=<%s> | deleted %d events", actor_id, session_id, removed)
        return int(removed)

    @_unavailable
    def put_summary(self, actor_id: str, session_id: str, summary: Summary, *, generation: int | None = None) -> bool:
        now = time.time()
        written = self._put_summary(
            keys=self._all_keys(actor_id, session_id),
            args=[repr(now), *self._ttl_args(now), summary.text, summary.through_turn,
                  "" if generation is None else str(generation)],
        )
        return bool(int(written))

    # -- reads ---------------------------------------------------------------------------------

    def load_window(self, actor_id: str, session_id: str, k: int) -> Window:
        return self._window(actor_id, session_id, k, touch=True)

    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        return self._window(actor_id, session_id, k, touch=False).turns

    @_unavailable
    def _window(self, actor_id: str, session_id: str, k: int, *, touch: bool) -> Window:
        now = time.time()
        generation, count, starts, raw = self._load_window(
            keys=self._all_keys(actor_id, session_id),
            args=[repr(now), k, *self._hold_args(now), "1" if touch else ""],
        )
        if not starts:
            return Window([], int(generation), int(count))
        first = int(starts[0])
        bounds = [int(s) - first for s in starts] + [len(raw)]
        turns: list[Turn] = []
        for begin, end in zip(bounds, bounds[1:]):
            turn = _parse_all(raw[begin:end], actor_id, session_id)
            if turn:
                turns.append(turn)
        return Window(turns, int(generation), int(count))

    @_unavailable
    def find_request(self, actor_id: str, session_id: str, key: str) -> StoredReply | None:
        now = time.time()
        found = self._find_request(keys=self._all_keys(actor_id, session_id),
                                   args=[repr(now), key, repr(now - self._request_retention)])
        if not found:
            return None
        return StoredReply(int(found[0]), reply_of(_parse_all(found[1], actor_id, session_id)))

    @_unavailable
    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        events, raw = self._list_events(keys=self._all_keys(actor_id, session_id), args=[repr(time.time())])
        marks = [_text(e).split(" ", 1) for e in events]
        bounds = [int(offset) for offset, _ in marks] + [len(raw)]
        stored: list[StoredEvent] = []
        for number, ((_, ts), begin, end) in enumerate(zip(marks, bounds, bounds[1:]), start=1):
            stored.append(StoredEvent(str(number), _parse_all(raw[begin:end], actor_id, session_id), float(ts)))
        return stored

    @_unavailable
    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        found = self._get_summary(keys=self._all_keys(actor_id, session_id), args=[repr(time.time())])
        if not found:
            return None
        return Summary(_text(found[0]), int(found[1]))

    @_unavailable
    def list_sessions(self, actor_id: str, limit: int, cursor: str | None = None) -> SessionPage:
        """Walk the actor's index newest first; one pipelined round trip of per-session scripts per batch.

        Ids whose session is gone (deleted, expired, never holding a turn) are skipped and unlisted
        (only if not written since), so their cost is paid once.
        """
        position = decode_cursor(cursor) if cursor is not None else None
        index = self.index_key(actor_id)
        top = repr(position[0]) if position else "+inf"
        now = repr(time.time())
        found: list[SessionInfo] = []
        gone: list[tuple[str, float]] = []
        offset = 0
        while len(found) <= limit:
            batch = limit + 1 - len(found) + 8
            entries = self._redis.zrange(index, top, "-inf", desc=True, byscore=True, offset=offset, num=batch,
                                         withscores=True)
            offset += len(entries)
            candidates = [(sid, score) for sid, score in ((_text(m), s) for m, s in entries)
                          if after_cursor(score, sid, position)]
            infos = self._pipelined([(self._session_info, self.keys(actor_id, sid)[:3], [now])
                                     for sid, _ in candidates]) if candidates else []
            for (sid, score), info in zip(candidates, infos):
                if not info:
                    gone.append((sid, score))
                    continue
                heads = _parse_all(info[1], actor_id, sid)
                first = next((m.text for m in heads if m.role == MessageRole.USER), "")
                found.append(SessionInfo(sid, int(info[0]), score, clip_first_message(first)))
            if len(entries) < batch:
                break
        if gone:
            self._pipelined([(self._unlist, [index], [sid, repr(score)]) for sid, score in gone])
        return page_sessions(found, limit)

    @_unavailable
    def get_history(self, actor_id: str, session_id: str, limit: int, before: int | None = None) -> HistoryPage:
        found = self._history(keys=self._all_keys(actor_id, session_id),
                              args=[repr(time.time()), limit, "" if before is None else before])
        if not found or not found[2]:
            return HistoryPage([], None)
        lead, lo, starts, raw, events = int(found[0]), int(found[1]), [int(s) for s in found[2]], found[3], found[4]
        marks = [_text(e).split(" ", 1) for e in events]
        event_offsets = [int(offset) for offset, _ in marks]
        first = starts[0]
        bounds = [s - first for s in starts] + [len(raw)]
        turns = []
        for position, (start, begin, end) in enumerate(zip(starts, bounds, bounds[1:]), start=lo):
            holder = bisect.bisect_right(event_offsets, start) - 1
            created_at = float(marks[holder][1]) if holder >= 0 else 0.0
            turns.append(history_turn(position - lead, _parse_all(raw[begin:end], actor_id, session_id), created_at))
        return history_page(turns, lo > 1)
