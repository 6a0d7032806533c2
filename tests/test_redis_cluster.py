"""Redis Cluster (``REDIS_CLUSTER=on``) on a real 3-master cluster: one slot per session, sessions spread over
the masters, and a master down: its sessions answer 503 naming the store, the others keep working, and it
recovers when the node is back. (The contract suite runs on it as ``[redis-cluster]``, and the load test's
two replicas as ``[redis-cluster]``.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.errors import ConfigError
from core.settings import Settings
from memory import create_store
from memory.base import Summary
from memory.redis_store import RedisStore, session_key
from tests.conftest import start_or_skip
from tests.redis_cluster import RedisCluster, delete_cluster_prefix
from tests.redis_server import unique_prefix
from tests.server import Server, free_port

USER, ASSISTANT = MessageRole.USER, MessageRole.ASSISTANT


def exchange(n: int) -> list[ConversationalMessage]:
    return [ConversationalMessage(f"question {n}", USER), ConversationalMessage(f"answer {n}", ASSISTANT)]


@pytest.fixture
def cluster_store(redis_cluster: RedisCluster) -> Iterator[RedisStore]:
    prefix = unique_prefix()
    store = RedisStore.from_url(redis_cluster.url, key_prefix=prefix, cluster=True)
    yield store
    store.close()
    delete_cluster_prefix(redis_cluster.url, prefix)


def test_every_key_of_a_session_is_in_one_slot_and_sessions_spread_over_the_masters(
        redis_cluster: RedisCluster, cluster_store: RedisStore) -> None:
    owners = set()
    for n in range(24):
        session = f"s{n}"
        cluster_store.add_turns("alice", session, exchange(n))
        cluster_store.put_summary("alice", session, Summary("so far", 1))
        keys = cluster_store.keys("alice", session)
        node = redis_cluster.node_of(keys[0])
        direct = redis.Redis(port=node.port)  # that master alone, no cluster routing
        try:
            assert len({direct.cluster("keyslot", k) for k in keys}) == 1
            assert direct.exists(*keys) == len(keys)  # all five keys live on the node that owns the slot
        finally:
            direct.close()
        owners.add(node.port)
    assert owners == {node.port for node in redis_cluster.nodes}  # a real spread, not one busy master


def test_a_script_over_two_sessions_would_be_refused_by_the_cluster(redis_cluster: RedisCluster) -> None:
    """The control: the scripts run only because each touches one slot (the hash tag)."""
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    try:
        a, b = next((session_key("t:", "alice", f"x{i}"), session_key("t:", "alice", f"y{i}")) for i in range(100)
                    if client.keyslot(session_key("t:", "alice", f"x{i}"))
                    != client.keyslot(session_key("t:", "alice", f"y{i}")))
        with pytest.raises((redis.exceptions.RedisClusterException, redis.ResponseError)):
            client.eval("return redis.call('EXISTS', KEYS[1], KEYS[2])", 2, f"{a}:meta", f"{b}:meta")
    finally:
        client.close()


def test_redis_cluster_on_selects_the_cluster_client_and_an_unreachable_cluster_stops_start_up(
        redis_cluster: RedisCluster) -> None:
    prefix = unique_prefix()
    store = create_store(Settings.from_env({"MEMORY_BACKEND": "redis", "REDIS_CLUSTER": "on", "KEY_PREFIX": prefix,
                                            "REDIS_URL": redis_cluster.url}))
    try:
        assert isinstance(store._redis, redis.cluster.RedisCluster)
        assert store.add_turns("alice", "s1", exchange(1)) == 1
    finally:
        store.close()
        delete_cluster_prefix(redis_cluster.url, prefix)
    with pytest.raises(ConfigError, match=r"REDIS_URL=.* \(REDIS_CLUSTER=on\): session store 'redis' is unavailable"):
        create_store(Settings.from_env({"MEMORY_BACKEND": "redis", "REDIS_CLUSTER": "on",
                                        "REDIS_URL": f"redis://127.0.0.1:{free_port()}"}))


def sessions_by_node(cluster: RedisCluster, prefix: str, actor: str = "default_user") -> dict[int, str]:
    """One session id per master port, found by where its hash tag lands."""
    found: dict[int, str] = {}
    for n in range(200):
        session = f"conv-{n}"
        found.setdefault(cluster.node_of(session_key(prefix, actor, session) + ":meta").port, session)
        if len(found) == len(cluster.nodes):
            return found
    raise AssertionError("no session landed on some master")


def test_a_session_on_a_dead_master_is_a_503_the_others_keep_working_and_it_recovers(tmp_path: Path) -> None:
    """The real server on a private cluster; one master is stopped and started again (it rejoins with its
    id, its slots and, from its append-only file, its data)."""
    cluster = start_or_skip(RedisCluster(tmp_path / "cluster"), "Redis Cluster")
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    app = Server({"MEMORY_BACKEND": "redis", "REDIS_CLUSTER": "on", "REDIS_URL": cluster.url,
                  "KEY_PREFIX": prefix}).start()
    try:
        by_node = sessions_by_node(cluster, prefix)
        dead = cluster.nodes[1]  # not the node the URL names: the client must find the others by itself
        doomed = by_node[dead.port]
        others = [s for port, s in by_node.items() if port != dead.port]
        for session in [doomed, *others]:
            for n in (1, 2):
                assert app.invoke({"message": f"m{n}"}, session)[1]["message_count"] == n

        dead.stop()
        status, body = app.invoke({"message": "m3"}, doomed)
        assert status == 503
        assert set(body) == {"error"} and "session store 'redis' is unavailable" in body["error"]
        for session in others:  # their masters are up: unaffected
            status, body = app.invoke({"message": "m3"}, session)
            assert (status, body["message_count"], body["history_length"]) == (200, 3, 2)

        dead.restart()
        cluster.wait_ok()
        status, body = app.invoke({"message": "m3"}, doomed)
        assert (status, body["message_count"], body["history_length"]) == (200, 3, 2)
        assert app.process.poll() is None
    finally:
        app.stop()
        cluster.stop()
