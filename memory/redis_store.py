"""Redis store: shared by every replica, sliding ``SESSION_TTL``, one Lua script per operation.

Keys of one session (``<a>``/``<s>`` are the actor and session ids, each
length-prefixed, so no two (actor, session) pairs can produce the same key,
whatever characters the ids contain)::

    <KEY_PREFIX>{<len a>:<a>:<len s>:<s>}:meta     hash: user_messages, expires_at, last_write
    <KEY_PREFIX>{...}:msgs                          list: one JSON message per entry, oldest first
    <KEY_PREFIX>{...}:turns                         list: offset into msgs where each turn starts
    <KEY_PREFIX>{...}:events                        list: "<offset into msgs> <timestamp>" per add_turns call
    <KEY_PREFIX>{...}:summary                       hash: text, through

The ``{...}`` hash tag keeps a session's keys in one Redis Cluster slot, so the
scripts below may touch all of them: with ``REDIS_CLUSTER=on`` the store talks
through redis-py's ``RedisCluster``, which sends each script to the node that
owns the session's slot. Every operation is one ``EVALSHA``:

- ``add_turns`` appends the messages, the turn starts, the event and bumps the
  user-message counter in one script: atomic for every client, thread and
  process, so concurrent writers get distinct, gap-free counts.
- ``get_last_k_turns`` reads the k newest turn offsets (``LRANGE turns -k -1``)
  and then only the messages from there to the end: its cost depends on k,
  never on the session's length.
- With a TTL every write sets ``EXPIRE`` on every key of the session (sliding
  expiry) and records ``expires_at``; reads treat a session past
  ``expires_at`` as gone even before Redis has reclaimed it, so expiry is
  exact whatever Redis' eviction timing. Without a TTL the keys persist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis
import redis.cluster
from bedrock_agentcore.memory.constants import ConversationalMessage
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from memory.base import (
    SessionStore, StoredEvent, Summary, Turn, check_messages, message_from_dict, message_to_dict, unavailable_on,
)

logger = logging.getLogger(__name__)


DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "agentcore:"
#: seconds to connect and to wait for any reply; a down or hung Redis fails the request within these bounds
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0

_SUFFIXES = ("meta", "msgs", "turns", "events", "summary")

# Drops the session first when it is past expires_at, so an expired session starts again at 1.
_EXPIRE_IF_DUE = """
local due = redis.call('HGET', KEYS[1], 'expires_at')
if due and tonumber(due) <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
end
"""

# Sliding expiry: every key of the session lives ARGV[2] more seconds (or persists without a TTL).
_REFRESH_TTL = """
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[3])
  for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
else
  redis.call('HDEL', KEYS[1], 'expires_at')
  for i = 1, 5 do redis.call('PERSIST', KEYS[i]) end
end
"""

# KEYS: meta msgs turns events summary
# ARGV: now, ttl ('' = none), expires_at, write token, then role, json for each message
_ADD_TURNS = _EXPIRE_IF_DUE + """
if redis.call('HGET', KEYS[1], 'last_write') == ARGV[4] then
  -- the same write retried after a lost reply: it is already stored
  return tonumber(redis.call('HGET', KEYS[1], 'user_messages'))
end
local len = redis.call('LLEN', KEYS[2])
local turns = redis.call('LLEN', KEYS[3])
redis.call('RPUSH', KEYS[4], len .. ' ' .. ARGV[1])
local users = 0
for i = 5, #ARGV, 2 do
  if ARGV[i] == 'USER' or turns == 0 then
    redis.call('RPUSH', KEYS[3], len)
    turns = turns + 1
  end
  if ARGV[i] == 'USER' then users = users + 1 end
  redis.call('RPUSH', KEYS[2], ARGV[i + 1])
  len = len + 1
end
local count = redis.call('HINCRBY', KEYS[1], 'user_messages', users)
redis.call('HSET', KEYS[1], 'last_write', ARGV[4])
""" + _REFRESH_TTL + """
return count
"""

# KEYS: meta msgs turns; ARGV: now, k -> {turn start offsets (newest k), messages from the first of them}
_LAST_K_TURNS = """
local due = redis.call('HGET', KEYS[1], 'expires_at')
if due and tonumber(due) <= tonumber(ARGV[1]) then return {{}, {}} end
local starts = redis.call('LRANGE', KEYS[3], -tonumber(ARGV[2]), -1)
if #starts == 0 then return {{}, {}} end
local len = redis.call('LLEN', KEYS[2])
return {starts, redis.call('LRANGE', KEYS[2], tonumber(starts[1]) - len, -1)}
"""

# KEYS: meta msgs events; ARGV: now -> {events, messages}
_LIST_EVENTS = """
local due = redis.call('HGET', KEYS[1], 'expires_at')
if due and tonumber(due) <= tonumber(ARGV[1]) then return {{}, {}} end
return {redis.call('LRANGE', KEYS[3], 0, -1), redis.call('LRANGE', KEYS[2], 0, -1)}
"""

# KEYS: meta msgs turns events summary; ARGV: now -> events removed (0 when already expired)
_DELETE = """
local due = redis.call('HGET', KEYS[1], 'expires_at')
local events = redis.call('LLEN', KEYS[4])
if due and tonumber(due) <= tonumber(ARGV[1]) then events = 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return events
"""

# KEYS: meta summary; ARGV: now -> {text, through} or {}
_GET_SUMMARY = """
local due = redis.call('HGET', KEYS[1], 'expires_at')
if due and tonumber(due) <= tonumber(ARGV[1]) then return {} end
local s = redis.call('HMGET', KEYS[2], 'text', 'through')
if not s[1] then return {} end
return s
"""

# KEYS: meta msgs turns events summary; ARGV: now, ttl, expires_at, text, through
_PUT_SUMMARY = _EXPIRE_IF_DUE + """
redis.call('HSET', KEYS[5], 'text', ARGV[4], 'through', ARGV[5])
""" + _REFRESH_TTL


#: any Redis failure (refused, timed out, OOM, read-only replica, a cluster node down...) is a 503 naming the store
_unavailable = unavailable_on("redis", (redis.RedisError, redis.exceptions.RedisClusterException))


class SessionScript:
    """One Lua script: ``EVALSHA``, and after ``NOSCRIPT`` one ``EVAL`` on the node that owns the keys.

    redis-py's ``Script`` answers ``NOSCRIPT`` with ``SCRIPT LOAD``, which a cluster client sends
    to every primary: with one primary down, sessions on the healthy nodes would fail too. ``EVAL``
    runs (and caches) the script on the session's own node only. ``NOSCRIPT`` means nothing ran,
    so running it then is never a second write.
    """

    def __init__(self, client: redis.Redis | redis.cluster.RedisCluster, text: str) -> None:
        self._client = client
        self._text = text
        self._sha = hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return self._client.evalsha(self._sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return self._client.eval(self._text, len(keys), *keys, *args)


def session_key(prefix: str, actor_id: str, session_id: str) -> str:
    """The key stem of one session: length-prefixed ids, so distinct pairs never share a key."""
    return f"{prefix}{{{len(actor_id)}:{actor_id}:{len(session_id)}:{session_id}}}"


def _parse(raw: bytes | str, actor_id: str, session_id: str) -> ConversationalMessage | None:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        logger.warning("actor_id=<%s> | session_id=<%s> | skipping a stored message that is not valid JSON: %s",
                       actor_id, session_id, e)
        return None
    return message_from_dict(data)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisStore(SessionStore):
    name = "redis"

    def __init__(self, client: redis.Redis | redis.cluster.RedisCluster, *, key_prefix: str = DEFAULT_PREFIX, ttl: int | None = None,
                 owns_client: bool = False) -> None:
        """Use ``client`` (injected; it is closed by ``close`` only when ``owns_client``)."""
        self._redis = client
        self._prefix = key_prefix
        self._ttl = ttl
        self._owns_client = owns_client
        self._add_turns = SessionScript(client, _ADD_TURNS)
        self._last_k_turns = SessionScript(client, _LAST_K_TURNS)
        self._list_events = SessionScript(client, _LIST_EVENTS)
        self._delete = SessionScript(client, _DELETE)
        self._get_summary = SessionScript(client, _GET_SUMMARY)
        self._put_summary = SessionScript(client, _PUT_SUMMARY)

    @classmethod
    def from_url(cls, url: str = DEFAULT_URL, *, key_prefix: str = DEFAULT_PREFIX, ttl: int | None = None,
                 socket_timeout: float = SOCKET_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 cluster: bool = False) -> RedisStore:
        """A client with bounded timeouts; options in the URL's query (``?socket_timeout=0.5``) win.

        A connection that breaks (Redis restarted) is retried once on a fresh
        connection, so the store recovers by itself; a timeout is not retried,
        so a hung Redis fails the request within ``socket_timeout``.

        ``cluster``: ``url`` names any node of a Redis Cluster. redis-py's
        ``RedisCluster`` reads the slot map from it now (``StoreUnavailable`` when
        no node answers), follows ``MOVED`` and refreshes the map when a node
        fails; a command is retried once (a retried write is recognised by its
        token, so it is never stored twice).
        """
        if cluster:
            return cls(cls._cluster_client(url, socket_timeout, connect_timeout), key_prefix=key_prefix, ttl=ttl,
                       owns_client=True)
        client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1, supported_errors=(redis.ConnectionError,)),
            retry_on_timeout=False,
        )
        return cls(client, key_prefix=key_prefix, ttl=ttl, owns_client=True)

    @staticmethod
    @_unavailable
    def _cluster_client(url: str, socket_timeout: float, connect_timeout: float) -> redis.cluster.RedisCluster:
        return redis.cluster.RedisCluster.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        )

    def close(self) -> None:
        if self._owns_client:
            self._redis.close()

    # -- helpers -------------------------------------------------------------------------------

    def keys(self, actor_id: str, session_id: str) -> list[str]:
        """Every key this session may use (``delete_session`` removes exactly these)."""
        stem = session_key(self._prefix, actor_id, session_id)
        return [f"{stem}:{suffix}" for suffix in _SUFFIXES]

    def _ttl_args(self, now: float) -> list[str]:
        if self._ttl is None:
            return ["", ""]
        return [str(self._ttl), repr(now + self._ttl)]

    # -- the contract --------------------------------------------------------------------------

    @_unavailable
    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage]) -> int:
        check_messages(messages)
        now = time.time()
        args: list[Any] = [repr(now), *self._ttl_args(now), uuid.uuid4().hex]
        for message in messages:
            args += [message.role.value, json.dumps(message_to_dict(message), ensure_ascii=False)]
        count = int(self._add_turns(keys=self.keys(actor_id, session_id), args=args))
        logger.debug("actor_id=<%s> | session_id=<%s> | stored %d messages, count %d",
                     actor_id, session_id, len(messages), count)
        return count

    @_unavailable
    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        if k <= 0:
            return []
        meta, msgs, turns_key, _, _ = self.keys(actor_id, session_id)
        starts, raw = self._last_k_turns(keys=[meta, msgs, turns_key], args=[repr(time.time()), k])
        if not starts:
            return []
        first = int(starts[0])
        bounds = [int(s) - first for s in starts] + [len(raw)]
        turns: list[Turn] = []
        for begin, end in zip(bounds, bounds[1:]):
            turn = [m for m in (_parse(r, actor_id, session_id) for r in raw[begin:end]) if m is not None]
            if turn:
                turns.append(turn)
        return turns

    @_unavailable
    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        meta, msgs, _, events_key, _ = self.keys(actor_id, session_id)
        events, raw = self._list_events(keys=[meta, msgs, events_key], args=[repr(time.time())])
        marks = [_text(e).split(" ", 1) for e in events]
        bounds = [int(offset) for offset, _ in marks] + [len(raw)]
        stored: list[StoredEvent] = []
        for number, ((_, ts), begin, end) in enumerate(zip(marks, bounds, bounds[1:]), start=1):
            messages = [m for m in (_parse(r, actor_id, session_id) for r in raw[begin:end]) if m is not None]
            stored.append(StoredEvent(str(number), messages, float(ts)))
        return stored

    @_unavailable
    def delete_session(self, actor_id: str, session_id: str) -> int:
        removed = int(self._delete(keys=self.keys(actor_id, session_id), args=[repr(time.time())]))
        logger.debug("actor_id=<%s> | session_id=<%s> | deleted %d events", actor_id, session_id, removed)
        return removed

    @_unavailable
    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        meta, _, _, _, summary = self.keys(actor_id, session_id)
        found = self._get_summary(keys=[meta, summary], args=[repr(time.time())])
        if not found:
            return None
        return Summary(_text(found[0]), int(found[1]))

    @_unavailable
    def put_summary(self, actor_id: str, session_id: str, summary: Summary) -> None:
        now = time.time()
        self._put_summary(
            keys=self.keys(actor_id, session_id),
            args=[repr(now), *self._ttl_args(now), summary.text, summary.through_turn],
        )

