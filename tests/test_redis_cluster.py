"""Redis Cluster (``REDIS_CLUSTER=on``) on a real 3-master cluster: one slot per session, sessions spread over
the masters, the actor's index updated by a command of its own, scripts a node lost run again by their text,
and a master down: its sessions answer 503 naming the store, the others keep working (even with their
scripts gone), and it recovers when the node is back. (The contract suite runs on it as ``[redis-cluster]``,
and the load test's two replicas as ``[redis-cluster]``.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.errors import AlreadyStored, ConfigError, SessionChanged, StoreUnavailable
from core.settings import Settings
from memory import create_store
from memory.base import StoredReply, Summary
from memory.redis_store import RedisStore, actor_index_key, session_key
from tests.conftest import start_or_skip
from tests.helpers.redis_cluster import ClusterNode, RedisCluster, delete_cluster_prefix
from tests.helpers.redis_server import unique_prefix
from tests.helpers.server import Server, free_port

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
    slots = set()
    for n in range(24):
        session = f"s{n}"
        cluster_store.add_turns("alice", session, exchange(n))
        cluster_store.put_summary("alice", session, Summary("so far", 1))
        keys = cluster_store.keys("alice", session)
        node = redis_cluster.node_of(keys[0])
        direct = redis.Redis(port=node.port)  # that master alone, no cluster routing
        try:
            session_slots = {direct.cluster("keyslot", k) for k in [*keys, *cluster_store.request_keys("alice", session),
                                                                     cluster_store.generation_key("alice", session)]}
            assert len(session_slots) == 1  # its script may touch every key of the session
            assert direct.exists(*keys) == len(keys)  # all five keys live on the node that owns the slot
            slots |= session_slots
        finally:
            direct.close()
        owners.add(node.port)
    assert len(slots) == 24  # one slot per session
    assert owners == {node.port for node in redis_cluster.nodes}  # a real spread, not one busy master
    index = redis.Redis(port=redis_cluster.nodes[0].port)
    try:
        assert index.cluster("keyslot", cluster_store.index_key("alice")) not in slots  # the index is elsewhere
    finally:
        index.close()


def test_on_a_redis_cluster_the_index_is_a_command_of_its_own_and_scripts_a_node_lost_run_again(
        redis_cluster: RedisCluster, cluster_store: RedisStore) -> None:
    store = cluster_store
    sessions = [f"s{n}" for n in range(6)]
    for n, session_id in enumerate(sessions):
        window = store.load_window("alice", session_id, 5)
        assert store.add_turns("alice", session_id, exchange(n), generation=window.generation,
                               idempotency_key=f"k{n}") == 1
    with pytest.raises(AlreadyStored):
        store.add_turns("alice", "s0", exchange(0), idempotency_key="k0")
    page = store.list_sessions("alice", 4)
    assert [i.session_id for i in page.sessions] == ["s5", "s4", "s3", "s2"]
    assert [i.session_id for i in store.list_sessions("alice", 4, page.next_cursor).sessions] == ["s1", "s0"]
    window = store.load_window("alice", "s1", 5)
    store.delete_session("alice", "s1")
    with pytest.raises(SessionChanged):
        store.add_turns("alice", "s1", exchange(9), generation=window.generation)
    assert store.put_summary("alice", "s1", Summary("late", 1), generation=window.generation) is False
    assert [i.session_id for i in store.list_sessions("alice", 10).sessions] == ["s5", "s4", "s3", "s2", "s0"]
    flush_scripts(redis_cluster.nodes)  # as after a restart: no node knows the scripts
    assert store.add_turns("alice", "s2", exchange(2)) == 2
    assert [t.turn for t in store.get_history("alice", "s2", 10).turns] == [1, 2]
    assert store.find_request("alice", "s3", "k3") == StoredReply(1, "answer 3")
    flush_scripts(redis_cluster.nodes)
    assert store.delete_session("alice", "s4") == 1  # (a pipeline: the delete and the unlisting)
    assert [i.session_id for i in store.list_sessions("alice", 10).sessions] == ["s2", "s5", "s3", "s0"]
    # why the index cannot be in the session's script there: another slot, which the cluster refuses
    inline = RedisStore(store._redis, key_prefix=unique_prefix(), index_in_script=True)
    with pytest.raises(StoreUnavailable, match="same key slot") as info:
        for session_id in sessions:
            inline.add_turns("alice", session_id, exchange(1))
    assert isinstance(info.value.__cause__, redis.exceptions.RedisClusterException)


def flush_scripts(nodes: list[ClusterNode]) -> None:
    for node in nodes:
        client = redis.Redis(port=node.port)
        try:
            client.script_flush()
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
    id, its slots and, from its append-only file, its data). The actor's session index lives on the master
    that stops: updating it after a turn is best effort, so the sessions on the other masters still answer."""
    cluster = start_or_skip(RedisCluster(tmp_path / "cluster"), "Redis Cluster")
    dead = cluster.nodes[1]  # not the node the URL names: the client must find the others by itself
    prefix = next(p for p in (f"t{uuid.uuid4().hex[:8]}:" for _ in range(500))
                  if cluster.node_of(actor_index_key(p, "default_user")) is dead)
    app = Server({"MEMORY_BACKEND": "redis", "REDIS_CLUSTER": "on", "REDIS_URL": cluster.url,
                  "KEY_PREFIX": prefix}).start()
    try:
        by_node = sessions_by_node(cluster, prefix)
        doomed = by_node[dead.port]
        others = [s for port, s in by_node.items() if port != dead.port]
        for session in [doomed, *others]:
            for n in (1, 2):
                assert app.invoke({"message": f"m{n}"}, session)[1]["message_count"] == n

        dead.stop()
        # the live masters lose their scripts too: they must run again on the session's own node, never
        # through SCRIPT LOAD, which goes to every primary (the dead one included)
        flush_scripts([n for n in cluster.nodes if n is not dead])
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
