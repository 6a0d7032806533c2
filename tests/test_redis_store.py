"""Redis-only behaviour, against a real redis-server: keys, TTL on every key, tail reads, atomic writes
across processes, corrupt entries, outages (a private server stopped, frozen and restarted), the
per-actor session index, and scripts flushed from the server (Redis Cluster: tests/test_redis_cluster.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from starlette.testclient import TestClient

import agent
from service import Assistant
from core.settings import Settings
from core.errors import StoreUnavailable
from memory.base import Summary
from memory.redis_store import RedisStore, session_key
from tests.conftest import SESSION_HEADER
from tests.helpers.redis_server import RedisServer
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.server import ROOT, Server, free_port

USER, ASSISTANT = MessageRole.USER, MessageRole.ASSISTANT


def exchange(n: int) -> list[ConversationalMessage]:
    return [ConversationalMessage(f"question {n}", USER), ConversationalMessage(f"answer {n}", ASSISTANT)]


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    p = f"test:{uuid.uuid4().hex}:"
    yield p
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{p}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def keys_under(raw: redis.Redis, prefix: str) -> set[str]:
    return {k.decode() for k in raw.scan_iter(match=f"{prefix}*")}


@pytest.mark.parametrize(
    ("first", "second"),
    [(("1:a", "b"), ("1", "a:1:b")), (("a}", "b"), ("a", "}b")), (("a", "b{x}"), ("a{x}", "b")),
     (("", "ab"), ("a", "b")), (("é", "s"), ("e", "s")), (("a:1:b", ""), ("a", "b:0:"))],
)
def test_length_prefixed_keys_never_collide_whatever_the_ids(redis_url: str, prefix: str,
                                                             first: tuple[str, str], second: tuple[str, str]) -> None:
    assert session_key(prefix, *first) != session_key(prefix, *second)
    store = RedisStore.from_url(redis_url, key_prefix=prefix)
    store.add_turns(*first, exchange(1))
    assert store.get_last_k_turns(*second, 10) == []
    assert store.delete_session(*second) == 0
    assert len(store.get_last_k_turns(*first, 10)) == 1


def test_a_session_uses_only_its_namespaced_keys_and_delete_removes_exactly_those(
        redis_url: str, prefix: str, raw: redis.Redis) -> None:
    store = RedisStore.from_url(redis_url, key_prefix=prefix)
    raw.set(f"{prefix}unrelated", "keep me")
    store.add_turns("alice", "s1", exchange(1))
    store.put_summary("alice", "s1", Summary("they talked", 1))
    store.add_turns("alice", "s2", exchange(2))
    store.add_turns("bob", "s1", exchange(3))
    alice_s1 = set(store.keys("alice", "s1"))
    assert all(k.startswith(prefix) for k in keys_under(raw, prefix))
    assert alice_s1 <= keys_under(raw, prefix)
    before = keys_under(raw, prefix)
    assert store.delete_session("alice", "s1") == 1
    # all of the session goes but its generation, the tombstone that keeps a late writer out (7 days)
    generation = store.generation_key("alice", "s1")
    assert keys_under(raw, prefix) == (before - alice_s1) | {generation}
    assert raw.get(generation) == b"1" and raw.ttl(generation) > 6 * 24 * 3600
    assert raw.get(f"{prefix}unrelated") == b"keep me"


def test_every_key_of_a_session_gets_the_ttl_and_each_write_slides_it(redis_url: str, prefix: str,
                                                                      raw: redis.Redis) -> None:
    store = RedisStore.from_url(redis_url, key_prefix=prefix, ttl=3600)
    store.add_turns("alice", "s1", exchange(1))
    store.put_summary("alice", "s1", Summary("so far", 1))
    keys = store.keys("alice", "s1")
    assert all(3500 < raw.ttl(k) <= 3600 for k in keys)
    for k in keys:  # as if most of the hour had passed
        raw.expire(k, 5)
    store.add_turns("alice", "s1", exchange(2))
    assert all(3500 < raw.ttl(k) <= 3600 for k in keys)
    # Redis itself removes an expired session: shorten the expiry and watch the keys go
    for k in keys:
        raw.pexpire(k, 1)
    # (the actor's session index has an expiry of its own; list_sessions skips what it names that is gone;
    # the generation is the session's tombstone: it outlives the data, so the id's next life is a new one)
    index, generation = store.index_key("alice"), store.generation_key("alice", "s1")
    deadline = time.monotonic() + 5
    while keys_under(raw, prefix) - {index, generation} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert keys_under(raw, prefix) - {index, generation} == set()
    assert raw.ttl(generation) > 6 * 24 * 3600
    assert store.list_sessions("alice", 10).sessions == []
    assert store.add_turns("alice", "s1", exchange(3)) == 1
    assert store.load_window("alice", "s1", 5).generation == 1


def test_without_a_ttl_keys_persist(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    RedisStore.from_url(redis_url, key_prefix=prefix, ttl=60).add_turns("alice", "s1", exchange(1))
    store = RedisStore.from_url(redis_url, key_prefix=prefix)  # TTL switched off: the next write persists the keys
    assert store.add_turns("alice", "s1", exchange(2)) == 2
    assert [raw.ttl(k) for k in store.keys("alice", "s1") if raw.exists(k)] == [-1, -1, -1, -1]


def test_last_k_turns_reads_only_the_tail(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    """Watch the commands Redis runs (MONITOR shows those inside scripts): k offsets and k turns' messages."""
    store = RedisStore.from_url(redis_url, key_prefix=prefix)
    for n in range(1000):
        store.add_turns("alice", "long", exchange(n))
    seen: list[tuple] = []
    ready = threading.Event()

    def watch() -> None:
        with raw.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if prefix not in command["command"]:
                    continue  # another client of a shared Redis
                seen.append(tuple(command["command"].split()))
                if command["command"].startswith("LRANGE") and "msgs" in command["command"]:
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready.wait(5)  # the monitor context is entered once Redis acknowledged MONITOR
    turns = store.get_last_k_turns("alice", "long", 3)
    watcher.join(5)
    assert [t[0].text for t in turns] == ["question 997", "question 998", "question 999"]
    ranges = [c for c in seen if c[0] == "LRANGE"]
    assert [(c[1].rsplit(":", 1)[1], c[2], c[3]) for c in ranges] == [("turns", "-3", "-1"), ("msgs", "-6", "-1")]


def test_corrupt_entries_are_skipped_with_a_warning(redis_url: str, prefix: str, raw: redis.Redis,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore.from_url(redis_url, key_prefix=prefix)
    for n in range(3):
        store.add_turns("alice", "s1", exchange(n))
    msgs = store.keys("alice", "s1")[1]
    raw.lset(msgs, 1, "not json {")
    raw.lset(msgs, 3, json.dumps({"role": "ROBOT", "text": "beep"}))
    with caplog.at_level(logging.WARNING):
        turns = store.get_last_k_turns("alice", "s1", 10)
    assert [[m.text for m in t] for t in turns] == [["question 0"], ["question 1"], ["question 2", "answer 2"]]
    assert [[m.text for m in e.messages] for e in store.list_events("alice", "s1")] == [
        ["question 0"], ["question 1"], ["question 2", "answer 2"]]
    assert "not valid JSON" in caplog.text and "not a valid message" in caplog.text
    assert store.add_turns("alice", "s1", exchange(3)) == 4


def test_a_retried_write_is_stored_once(redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py resends a command once when the connection broke; the write token makes that harmless."""
    store = RedisStore.from_url(redis_url, key_prefix=prefix)
    store.add_turns("alice", "s1", exchange(1))
    fixed = uuid.uuid4()
    monkeypatch.setattr(uuid, "uuid4", lambda: fixed)
    assert store.add_turns("alice", "s1", exchange(2)) == 2
    assert store.add_turns("alice", "s1", exchange(2)) == 2  # the same write again
    assert len(store.list_events("alice", "s1")) == 2


WRITER = """
import sys
from bedrock_agentcore.memory.constants import ConversationalMessage as M, MessageRole as R
from memory.redis_store import RedisStore
store = RedisStore.from_url(sys.argv[1], key_prefix=sys.argv[2])
w = int(sys.argv[3])
for n in range(25):
    q, a = f"question {w * 100 + n}", f"answer {w * 100 + n}"
    print(store.add_turns("alice", "busy", [M(q, R.USER), M(a, R.ASSISTANT)]), flush=True)
"""


def test_writers_in_separate_processes_get_distinct_gap_free_counts(redis_url: str, prefix: str) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, redis_url, prefix, str(w)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for w in range(4)]
    counts = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        counts += [int(line) for line in out.split()]
    assert sorted(counts) == list(range(1, 101))
    turns = RedisStore.from_url(redis_url, key_prefix=prefix).get_last_k_turns("alice", "busy", 200)
    assert len(turns) == 100
    for turn in turns:
        assert [m.role for m in turn] == [USER, ASSISTANT]
        assert turn[0].text.replace("question", "answer") == turn[1].text


# -- outages -----------------------------------------------------------------------------------

def test_redis_outage_is_a_503_the_server_survives_and_recovers_with_every_turn(tmp_path: Path) -> None:
    """The real server process over a private redis-server that is stopped and started again."""
    redis_server = RedisServer(tmp_path / "redis", appendonly=True).start()
    app = Server({"MEMORY_BACKEND": "redis", "REDIS_URL": redis_server.url}).start()
    try:
        assert app.invoke({"message": "one"}, "conv1")[1]["message_count"] == 1
        assert app.invoke({"message": "two"}, "conv1")[1]["message_count"] == 2
        redis_server.stop()
        status, body = app.invoke({"message": "three"}, "conv1")
        assert status == 503
        assert set(body) == {"error"} and "session store 'redis' is unavailable" in body["error"]
        assert app.process.poll() is None
        with urllib.request.urlopen(f"{app.url}/ping", timeout=5) as r:
            assert r.status == 200
        redis_server = RedisServer(tmp_path / "redis", redis_server.port, appendonly=True).start()
        status, body = app.invoke({"message": "three"}, "conv1")
        assert (status, body["message_count"], body["history_length"]) == (200, 3, 2)
        assert app.invoke({"message": "other"}, "conv2")[1]["message_count"] == 1
    finally:
        app.stop()
        redis_server.stop()


@pytest.fixture
def frozen_redis_client(tmp_path: Path) -> Iterator[tuple[TestClient, RedisServer, ScriptedModel]]:
    server = RedisServer(tmp_path / "redis").start()
    # timeouts from the URL's query win over the store's defaults
    store = RedisStore.from_url(f"{server.url}?socket_timeout=0.3&socket_connect_timeout=0.3")
    model = ScriptedModel(echo=True)
    settings = replace(Settings.from_env({}), memory_backend="redis", model_provider="echo")
    agent.set_assistant(Assistant(settings, store, model))
    try:
        with TestClient(agent.app) as client:
            yield client, server, model
    finally:
        agent.set_assistant(None)
        server.thaw()
        server.stop()
        store.close()


def test_a_hung_redis_fails_the_request_fast_with_a_503_and_the_next_one_works(frozen_redis_client) -> None:
    client, server, model = frozen_redis_client
    headers = {SESSION_HEADER: "conv1"}
    assert client.post("/invocations", json={"message": "one"}, headers=headers).json()["message_count"] == 1
    server.freeze()
    response = client.post("/invocations", json={"message": "two"}, headers=headers)
    assert response.status_code == 503
    assert "session store 'redis' is unavailable" in response.json()["error"]
    assert "Timeout" in response.json()["error"]
    assert len(model.calls) == 1  # the history read failed before the model was asked
    server.thaw()
    body = client.post("/invocations", json={"message": "two"}, headers=headers).json()
    assert (body["message_count"], body["history_length"]) == (2, 1)


def test_store_errors_name_the_store(prefix: str) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", key_prefix=prefix)
    with pytest.raises(StoreUnavailable) as info:
        store.add_turns("alice", "s1", exchange(1))
    assert info.value.status == 503 and info.value.store == "redis"


# -- listing ---------------------------------------------------------------------------------------

def test_list_sessions_skips_and_unlists_sessions_that_are_gone(redis_url: str, prefix: str,
                                                                 raw: redis.Redis) -> None:
    store = RedisStore.from_url(redis_url, key_prefix=prefix)
    for n in range(3):
        store.add_turns("alice", f"s{n}", exchange(n))
    raw.delete(*store.keys("alice", "s1"))  # as Redis does when a session's keys expire
    page = store.list_sessions("alice", 1)
    assert [i.session_id for i in page.sessions] == ["s2"]
    assert [i.session_id for i in store.list_sessions("alice", 1, page.next_cursor).sessions] == ["s0"]
    assert {m.decode() for m in raw.zrange(store.index_key("alice"), 0, -1)} == {"s0", "s2"}
    store.add_turns("alice", "s1", exchange(9))  # written again: listed again
    assert [i.session_id for i in store.list_sessions("alice", 5).sessions] == ["s1", "s2", "s0"]


def test_list_sessions_touches_only_the_actors_own_keys(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    """MONITOR shows every command, also inside scripts: other actors' sessions are never looked at."""
    store = RedisStore.from_url(redis_url, key_prefix=prefix)
    for n in range(20):
        store.add_turns(f"other{n}", "s1", exchange(n))
        store.add_turns("alice", f"s{n}", exchange(n))
    seen: list[str] = []
    ready, done = threading.Event(), threading.Event()

    def watch() -> None:
        with raw.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if prefix in command["command"]:
                    seen.append(command["command"])
                if done.is_set() and "stop-marker" in command["command"]:
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready.wait(5)
    page = store.list_sessions("alice", 5)
    done.set()
    raw.get(f"{prefix}stop-marker")
    watcher.join(5)
    assert [i.session_id for i in page.sessions] == [f"s{n}" for n in (19, 18, 17, 16, 15)]
    touched = [c for c in seen if "stop-marker" not in c]
    assert touched and not [c for c in touched if "other" in c]
    assert len([c for c in touched if c.startswith("EVALSHA")]) <= 5 + 1 + 8  # a batch: the page, one more, a margin


def test_a_generation_outlives_the_session_by_at_least_7_days_and_each_write_renews_it(
        redis_url: str, prefix: str, raw: redis.Redis) -> None:
    store = RedisStore.from_url(redis_url, key_prefix=prefix, ttl=60)
    store.add_turns("alice", "s1", exchange(1))
    store.delete_session("alice", "s1")
    generation = store.generation_key("alice", "s1")
    raw.expire(generation, 100)
    assert store.add_turns("alice", "s1", exchange(2), generation=1) == 1
    assert raw.ttl(generation) > 6 * 24 * 3600
    assert all(raw.ttl(k) <= 60 for k in store.keys("alice", "s1") if raw.exists(k))


# -- scripts ---------------------------------------------------------------------------------------

def test_the_lua_scripts_are_files_the_container_build_keeps() -> None:
    """The scripts live in ``memory/lua/*.lua``, read at import: the build context (``COPY . .``) must hold them."""
    from fnmatch import fnmatch

    from memory.redis_scripts import ADD_TURNS, LUA_DIR

    scripts = sorted(path.relative_to(ROOT).as_posix() for path in LUA_DIR.glob("*.lua"))
    assert "memory/lua/add_turns.lua" in scripts and len(scripts) == 13
    assert "{{" not in ADD_TURNS  # every placeholder filled
    ignored = [line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    left_out = [s for s in scripts if any(fnmatch(s, pattern) or fnmatch(Path(s).name, pattern)
                                          or s.startswith(pattern + "/") for pattern in ignored)]
    assert left_out == []


def test_a_script_flushed_from_redis_runs_again_for_pipelined_calls(redis_url: str, prefix: str,
                                                                    raw: redis.Redis) -> None:
    """A restarted Redis has no scripts: the calls NOSCRIPT failed are sent again by their text."""
    store = RedisStore.from_url(redis_url, key_prefix=prefix)
    store.add_turns("alice", "s1", exchange(1))
    raw.script_flush()
    assert [i.session_id for i in store.list_sessions("alice", 5).sessions] == ["s1"]
    raw.script_flush()
    assert store.delete_session("alice", "s1") == 1
    assert store.list_sessions("alice", 5).sessions == []
