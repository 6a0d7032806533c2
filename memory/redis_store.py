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
owns the session's slot. Every session operation is one script:

- ``add_turns`` checks the generation and the idempotency key, appends the
  messages, the turn starts and the event and bumps the user-message counter
  in one script: atomic for every client, thread, process and replica, so
  concurrent writers get distinct, gap-free counts and a turn begun before a
  clear is refused.
- ``load_window`` / ``get_last_k_turns`` read the generation, the count, the k
  newest turn offsets (``LRANGE turns -k -1``) and then only the messages from
  there to the end: the cost depends on k, never on the session's length.
- With a TTL every write (and a turn's ``load_window``) sets ``EXPIRE`` on every
  key of the session (sliding expiry) and records ``expires_at``; reads treat a
  session past ``expires_at`` as gone even before Redis has reclaimed it, so
  expiry is exact whatever Redis' eviction timing. Without a TTL the keys persist.
  The ``gen`` tombstone lives ``max(SESSION_TTL, 7 days)`` after the last write.

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
import hashlib
import json
import logging
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

logger = logging.getLogger(__name__)


DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "agentcore:"
#: seconds to connect and to wait for any reply; a down or hung Redis fails the request within these bounds
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0

_SUFFIXES = ("meta", "msgs", "turns", "events", "summary")
_REQUEST_SUFFIXES = ("reqs", "reqtimes")
#: idempotency records forgotten per keyed write once past their retention (bounded work per write)
_PRUNE_PER_WRITE = 16

# The actor's index: each session id scored by its last write. With a TTL, entries older than the
# generations' retention go, and the index itself expires when none of the actor's sessions was written
# for that long.
_INDEX_FUNCTION = """
local function index_touch(index, score, ttl, cutoff, member)
  redis.call('ZADD', index, 'GT', score, member)
  if ttl ~= '' then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. cutoff)
    redis.call('EXPIRE', index, ttl)
  else
    redis.call('PERSIST', index)
  end
end
"""

# Every session script gets the session's 8 keys: meta msgs turns events summary reqs reqtimes gen.
_COMMON = _INDEX_FUNCTION + """
local function expired(now)
  local due = redis.call('HGET', KEYS[1], 'expires_at')
  return due and tonumber(due) <= tonumber(now)
end
local function drop()  -- everything of the session except its generation
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
end
local function generation()
  return tonumber(redis.call('GET', KEYS[8]) or '0')
end
local function refresh(ttl, expires_at)  -- sliding expiry: every key of the session lives ttl more seconds
  if ttl ~= '' then
    redis.call('HSET', KEYS[1], 'expires_at', expires_at)
    for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
  elseif redis.call('HDEL', KEYS[1], 'expires_at') == 1 then  -- a TTL was set before: the keys persist now
    for i = 1, 7 do redis.call('PERSIST', KEYS[i]) end
  end
end
local function record(key, cutoff)  -- {count, offset, n} of an idempotency key still remembered, or nil
  local rec = redis.call('HGET', KEYS[6], key)
  if not rec then return nil end
  local at, count, offset, n = string.match(rec, '^(%S+) (%d+) (%d+) (%d+)$')
  if not at or tonumber(at) < tonumber(cutoff) then return nil end
  return {count, tonumber(offset), tonumber(n)}
end
"""

# ARGV: now, ttl ('' = none), expires_at, write token, generation ('' = any), idempotency key ('' = none),
#       keys stored before this are forgotten, generation ttl, index ttl ('' = none), index entries older than
#       this go, session id, then role, json for each message.
#       KEYS[9], if given: the actor's index (outside the session's slot: never in Redis Cluster)
# -> the count, {'changed'} or {'stored', count, messages}
_ADD_TURNS = _COMMON + """
if expired(ARGV[1]) then drop() end
if redis.call('HGET', KEYS[1], 'last_write') == ARGV[4] then
  -- the same write retried after a lost reply: it is already stored
  return tonumber(redis.call('HGET', KEYS[1], 'user_messages'))
end
if ARGV[5] ~= '' and generation() ~= tonumber(ARGV[5]) then return {'changed'} end
if ARGV[6] ~= '' then
  local old = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', '(' .. ARGV[7], 'LIMIT', 0, """ + str(
    _PRUNE_PER_WRITE) + """)
  if #old > 0 then
    redis.call('ZREM', KEYS[7], unpack(old))
    redis.call('HDEL', KEYS[6], unpack(old))
  end
  local rec = record(ARGV[6], ARGV[7])
  if rec then
    return {'stored', rec[1], redis.call('LRANGE', KEYS[2], rec[2], rec[2] + rec[3] - 1)}
  end
end
local len = redis.call('LLEN', KEYS[2])
local first = len
local turns = redis.call('LLEN', KEYS[3])
redis.call('RPUSH', KEYS[4], len .. ' ' .. ARGV[1])
local users = 0
for i = 12, #ARGV, 2 do
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
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[6], ARGV[6], ARGV[1] .. ' ' .. count .. ' ' .. first .. ' ' .. (len - first))
  redis.call('ZADD', KEYS[7], ARGV[1], ARGV[6])
end
refresh(ARGV[2], ARGV[3])
if redis.call('EXISTS', KEYS[8]) == 1 then redis.call('EXPIRE', KEYS[8], ARGV[8]) end
if KEYS[9] then index_touch(KEYS[9], ARGV[1], ARGV[9], ARGV[10], ARGV[11]) end
return count
"""

# ARGV: now, k, ttl, expires_at, touch ('1': a turn's read, which restarts the expiry)
# -> {generation, count, turn start offsets (newest k), messages from the first of them}
_LOAD_WINDOW = _COMMON + """
local gen = generation()
local meta = redis.call('HMGET', KEYS[1], 'expires_at', 'user_messages')
if meta[1] and tonumber(meta[1]) <= tonumber(ARGV[1]) then return {gen, 0, {}, {}} end
local count = tonumber(meta[2] or '0')
if ARGV[5] == '1' and ARGV[3] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then refresh(ARGV[3], ARGV[4]) end
local k = tonumber(ARGV[2])
if k <= 0 then return {gen, count, {}, {}} end
local starts = redis.call('LRANGE', KEYS[3], -k, -1)
if #starts == 0 then return {gen, count, {}, {}} end
local len = redis.call('LLEN', KEYS[2])
return {gen, count, starts, redis.call('LRANGE', KEYS[2], tonumber(starts[1]) - len, -1)}
"""

# ARGV: now, key, keys stored before this are forgotten -> {count, messages} or {}
_FIND_REQUEST = _COMMON + """
if expired(ARGV[1]) then return {} end
local rec = record(ARGV[2], ARGV[3])
if not rec then return {} end
return {rec[1], redis.call('LRANGE', KEYS[2], rec[2], rec[2] + rec[3] - 1)}
"""

# ARGV: now -> {events, messages}
_LIST_EVENTS = _COMMON + """
if expired(ARGV[1]) then return {{}, {}} end
return {redis.call('LRANGE', KEYS[4], 0, -1), redis.call('LRANGE', KEYS[2], 0, -1)}
"""

# ARGV: now, generation ttl -> events removed (0 when already expired)
_DELETE = _COMMON + """
local events = redis.call('LLEN', KEYS[4])
if expired(ARGV[1]) then events = 0 end
drop()
redis.call('INCR', KEYS[8])
redis.call('EXPIRE', KEYS[8], ARGV[2])
return events
"""

# ARGV: now -> {text, through} or {}
_GET_SUMMARY = _COMMON + """
if expired(ARGV[1]) then return {} end
local s = redis.call('HMGET', KEYS[5], 'text', 'through')
if not s[1] then return {} end
return s
"""

# ARGV: now, ttl, expires_at, text, through, generation ('' = any) -> 1 written, 0 refused
_PUT_SUMMARY = _COMMON + """
if expired(ARGV[1]) then
  drop()  -- its summary must not reach the session that starts next
  return 0
end
if ARGV[6] ~= '' then
  if generation() ~= tonumber(ARGV[6]) then return 0 end  -- cleared since
  -- the turns it summarises are gone
  if tonumber(redis.call('HGET', KEYS[1], 'user_messages') or '0') < tonumber(ARGV[5]) then return 0 end
end
redis.call('HSET', KEYS[5], 'text', ARGV[4], 'through', ARGV[5])
refresh(ARGV[2], ARGV[3])
return 1
"""

# ARGV: now, limit, before ('' = newest) -> {} or {lead, first position, turn starts, messages, events}
# The events holding the page's turns are found by galloping back from the newest event, so the
# cost follows the page's distance from the end, not the session's length.
_HISTORY = _COMMON + """
if expired(ARGV[1]) then return {} end
local total = redis.call('LLEN', KEYS[3])
if total == 0 then return {} end
local lead = total - tonumber(redis.call('HGET', KEYS[1], 'user_messages') or '0')
local hi = total
if ARGV[3] ~= '' then hi = math.min(total, tonumber(ARGV[3]) - 1 + lead) end
if hi < 1 then return {lead, 0, {}, {}, {}} end
local lo = math.max(1, hi - tonumber(ARGV[2]) + 1)
local starts = redis.call('LRANGE', KEYS[3], lo - 1, hi - 1)
local stop = redis.call('LLEN', KEYS[2])
if hi < total then stop = tonumber(redis.call('LINDEX', KEYS[3], hi)) end
local first = tonumber(starts[1])
local last = tonumber(starts[#starts])
local msgs = redis.call('LRANGE', KEYS[2], first, stop - 1)
local function offset(entry) return tonumber(string.match(entry or '', '^(%d+)') or '0') end
local evs = {}
local count = redis.call('LLEN', KEYS[4])
if count > 0 then
  local right, left, step = count - 1, count - 1, 1
  while left > 0 and offset(redis.call('LINDEX', KEYS[4], left)) > first do
    right = left - 1
    left = math.max(0, left - step)
    step = step * 2
  end
  while left < right do
    local mid = math.floor((left + right + 1) / 2)
    if offset(redis.call('LINDEX', KEYS[4], mid)) <= first then left = mid else right = mid - 1 end
  end
  local pos = left
  repeat
    local chunk = redis.call('LRANGE', KEYS[4], pos, pos + #starts + 8)
    for _, e in ipairs(chunk) do evs[#evs + 1] = e end
    pos = pos + #chunk
  until #chunk == 0 or pos >= count or offset(chunk[#chunk]) > last
end
return {lead, lo, starts, msgs, evs}
"""

# KEYS: meta msgs turns; ARGV: now -> {} (gone, expired, no turns) or {count, first messages of the first 2 turns}
_SESSION_INFO = """
local due = redis.call('HGET', KEYS[1], 'expires_at')
if due and tonumber(due) <= tonumber(ARGV[1]) then return {} end
if redis.call('LLEN', KEYS[2]) == 0 then return {} end
local heads = {}
for _, offset in ipairs(redis.call('LRANGE', KEYS[3], 0, 1)) do
  heads[#heads + 1] = redis.call('LINDEX', KEYS[2], offset)
end
return {redis.call('HGET', KEYS[1], 'user_messages') or '0', heads}
"""

# KEYS: the actor's index; ARGV: its write time, ttl ('' = none), entries older than this go, session id
_INDEX_TOUCH = _INDEX_FUNCTION + """
index_touch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""

# KEYS: the actor's index; ARGV: session id, a score -> unlist it if not written since (score not above)
_UNLIST = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""


#: any Redis failure (refused, timed out, OOM, read-only replica, a cluster with no reachable node or
#: uncovered slots...) is a 503 naming the store
_unavailable = unavailable_on("redis", (redis.RedisError, RedisClusterException))


class SessionScript:
    """One Lua script: ``EVALSHA``, and after ``NOSCRIPT`` one ``EVAL`` on the node that owns the keys.

    redis-py's ``Script`` answers ``NOSCRIPT`` with ``SCRIPT LOAD``, which a cluster client sends
    to every primary: with one primary down, sessions on the healthy nodes would fail too. ``EVAL``
    runs (and caches) the script on the session's own node only.
    """

    def __init__(self, client: redis.Redis | RedisCluster, text: str) -> None:
        self._client = client
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return self._client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return self._client.eval(self.text, len(keys), *keys, *args)


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
                 owns_client: bool = False, index_in_script: bool | None = None) -> None:
        """Use ``client`` (injected; it is closed by ``close`` only when ``owns_client``).

        ``index_in_script``: update the actor's session index inside ``add_turns``' script (one
        command) rather than with a second script after it. Default: in the script unless
        ``client`` is a ``RedisCluster``, where the index's slot differs from the session's.
        """
        self._redis = client
        self._index_in_script = (not isinstance(client, RedisCluster)) if index_in_script is None else index_in_script
        self._prefix = key_prefix
        self._ttl = ttl
        self._generation_ttl = generation_retention(ttl)
        self._request_retention = request_retention(ttl)
        self._index_ttl = "" if ttl is None else str(self._generation_ttl)  # without a TTL the index persists
        self._owns_client = owns_client
        self._add_turns = SessionScript(client, _ADD_TURNS)
        self._load_window = SessionScript(client, _LOAD_WINDOW)
        self._find_request = SessionScript(client, _FIND_REQUEST)
        self._list_events = SessionScript(client, _LIST_EVENTS)
        self._delete = SessionScript(client, _DELETE)
        self._get_summary = SessionScript(client, _GET_SUMMARY)
        self._put_summary = SessionScript(client, _PUT_SUMMARY)
        self._history = SessionScript(client, _HISTORY)
        self._session_info = SessionScript(client, _SESSION_INFO)
        self._index_touch = SessionScript(client, _INDEX_TOUCH)
        self._unlist = SessionScript(client, _UNLIST)

    @classmethod
    def from_url(cls, url: str = DEFAULT_URL, *, key_prefix: str = DEFAULT_PREFIX, ttl: int | None = None,
                 socket_timeout: float = SOCKET_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 cluster: bool = False) -> RedisStore:
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
        if self._ttl is None:
            return ["", ""]
        return [str(self._ttl), repr(now + self._ttl)]

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
            args=[repr(now), k, *self._ttl_args(now), "1" if touch else ""],
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
