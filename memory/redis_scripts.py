"""The Redis store's Lua scripts (``memory/lua/*.lua``, read once at import) and how one is run.

Every session operation is one script, so it is atomic for every client and replica; the files hold
each script's KEYS / ARGV and what it returns. Per-session scripts share ``index.lua`` (the actor
index update) and ``common.lua`` (expiry, generation, idempotency helpers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

#: idempotency records forgotten per keyed write once past their retention (bounded work per write)
_PRUNE_PER_WRITE = 16


#: the Lua scripts, one ``.lua`` file each, read once at import (they ship beside this module)
LUA_DIR = Path(__file__).with_name("lua")


def _lua(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")


def _session_script(name: str) -> str:
    """A per-session script: the actor-index function and the helpers every session script shares, then its body.
    Each gets the session's 8 keys: meta msgs turns events summary reqs reqtimes gen."""
    return _INDEX_FUNCTION + _COMMON + _lua(name)


_INDEX_FUNCTION = _lua("index")
_COMMON = _lua("common")
ADD_TURNS = _session_script("add_turns").replace("{{PRUNE_PER_WRITE}}", str(_PRUNE_PER_WRITE))
LOAD_WINDOW = _session_script("load_window")
FIND_REQUEST = _session_script("find_request")
LIST_EVENTS = _session_script("list_events")
DELETE = _session_script("delete")
GET_SUMMARY = _session_script("get_summary")
PUT_SUMMARY = _session_script("put_summary")
HISTORY = _session_script("history")
SESSION_INFO = _lua("session_info")
INDEX_TOUCH = _INDEX_FUNCTION + _lua("index_touch")
UNLIST = _lua("unlist")


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
