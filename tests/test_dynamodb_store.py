"""DynamoDB-only behaviour on the real engine (DynamoDB Local): service calls per turn, one Query per history
read, conditional writes across processes, items under 400 KB, TTL, the table check at start-up, and
outages (throttling through botocore's Stubber; an endpoint stopped, hung and restarted for real)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from botocore.stub import Stubber
from starlette.testclient import TestClient

import agent
from core.errors import BadRequest, ConfigError, StoreUnavailable
from core.settings import Settings
from memory import create_store
from memory.base import Summary
from memory.dynamodb import (
    ACTOR_INDEX, META_SK, PART_BYTES, DynamoDBStore, actor_key, create_table, make_client, session_pk,
)
from service import Assistant
from tests.conftest import SESSION_HEADER, start_or_skip, unique_table
from tests.dynamodb_local import CLIENT_ENV, DynamoDBLocal
from tests.scripted_model import ScriptedModel
from tests.server import ROOT, Server, free_port

USER, ASSISTANT = MessageRole.USER, MessageRole.ASSISTANT


def exchange(n: int) -> list[ConversationalMessage]:
    return [ConversationalMessage(f"question {n}", USER), ConversationalMessage(f"answer {n}", ASSISTANT)]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials, as for DynamoDB Local (nothing here can reach AWS)."""
    for name, value in CLIENT_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def table(dynamodb_local: DynamoDBLocal) -> Iterator[str]:
    name = unique_table()
    client = dynamodb_local.client()
    create_table(client, name)
    yield name
    client.delete_table(TableName=name)


@dataclass
class Calls:
    """Every DynamoDB operation a client sends (and, after it, the answer's item count)."""

    names: list[str] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    counts: list[int | None] = field(default_factory=list)

    def attach(self, client: Any) -> Calls:
        client.meta.events.register("provide-client-params.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)
        return self

    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.names.append(model.name)
        self.params.append(dict(params))

    def _after(self, parsed: dict[str, Any], **_: Any) -> None:
        self.counts.append(parsed.get("Count"))

    def clear(self) -> None:
        self.names.clear()
        self.params.clear()
        self.counts.clear()


def new_store(engine: DynamoDBLocal, table: str, ttl: int | None = None) -> tuple[DynamoDBStore, Calls]:
    """A store as a fresh process builds it (nothing remembered), and the log of its calls."""
    client = engine.client()
    return DynamoDBStore(client, table, ttl=ttl), Calls().attach(client)


def items(engine: DynamoDBLocal, table: str) -> list[dict[str, Any]]:
    client = engine.client()
    found, kwargs = [], {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        found += page["Items"]
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values in UTF-8 (numbers and booleans: a few bytes)."""
    size = 0
    for name, value in item.items():
        (kind, data), = value.items()
        size += len(name.encode()) + (len(data.encode()) if kind == "S" else 21)
    return size


@pytest.fixture
def http(dynamodb_local: DynamoDBLocal, table: str) -> Iterator[tuple[TestClient, DynamoDBStore, Calls]]:
    """The entrypoint (echo model, rolling summary on, k=3) on a store whose every call is logged."""
    store, calls = new_store(dynamodb_local, table)
    settings = replace(Settings.from_env({}), memory_backend="dynamodb", model_provider="echo", memory_k=3,
                       max_message_chars=5_000_000)
    agent.set_assistant(Assistant(settings, store, ScriptedModel(echo=True)))
    try:
        with TestClient(agent.app) as client:
            yield client, store, calls
    finally:
        agent.set_assistant(None)


def post(client: TestClient, message: str, session: str = "conv") -> tuple[int, dict[str, Any]]:
    response = client.post("/invocations", json={"message": message}, headers={SESSION_HEADER: session})
    return response.status_code, response.json()


# -- calls per turn ---------------------------------------------------------------------------------

def test_a_plain_turn_costs_two_dynamodb_calls_also_with_a_full_window_and_after_a_restart(
        http, dynamodb_local: DynamoDBLocal, table: str) -> None:
    client, store, calls = http
    for n in range(1, 4):  # new session, then a window filling up
        calls.clear()
        assert post(client, f"message {n}")[1]["message_count"] == n
        assert calls.names == ["Query", "TransactWriteItems"]
    store.put_summary("default_user", "conv", Summary("the first turns", 2))
    calls.clear()
    status, body = post(client, "message 4")  # a full window: the summary comes with it, and is current
    assert (status, body["message_count"], body["history_length"]) == (200, 4, 3)
    assert calls.names == ["Query", "TransactWriteItems"]
    assert calls.params[0]["Limit"] == 4 and calls.params[0]["ScanIndexForward"] is False

    restarted, restarted_calls = new_store(dynamodb_local, table)  # nothing remembered
    agent.get_assistant().store = restarted
    assert post(client, "message 5")[1]["message_count"] == 5
    assert restarted_calls.names == ["Query", "TransactWriteItems"]


def test_a_write_without_a_read_before_it_costs_two_calls_and_a_lost_race_one_more(
        dynamodb_local: DynamoDBLocal, table: str) -> None:
    first, first_calls = new_store(dynamodb_local, table)
    assert first.add_turns("alice", "s1", exchange(1)) == 1
    assert first_calls.names == ["GetItem", "TransactWriteItems"]
    first.get_last_k_turns("alice", "s1", 10)
    other, _ = new_store(dynamodb_local, table)  # another replica writes twice meanwhile
    other.add_turns("alice", "s1", exchange(2))
    other.add_turns("alice", "s1", exchange(3))
    first_calls.clear()
    assert first.add_turns("alice", "s1", exchange(4)) == 4  # not 2: the condition saw the other writes
    # the cancelled transaction returned the head as it is: no read before the second try
    assert first_calls.names == ["TransactWriteItems", "TransactWriteItems"]
    assert [m.text for t in first.get_last_k_turns("alice", "s1", 10) for m in t][::2] == [
        f"question {n}" for n in (1, 2, 3, 4)]


def test_the_history_is_one_query_of_k_plus_one_items_however_long_the_session(
        dynamodb_local: DynamoDBLocal, table: str) -> None:
    writer, _ = new_store(dynamodb_local, table)
    for session, turns in (("short", 10), ("long", 1_000)):
        for start in range(0, turns, 90):  # one transaction holds at most 99 items
            writer.add_turns("alice", session, [m for n in range(start, min(turns, start + 90)) for m in exchange(n)])
    for session, turns in (("short", 10), ("long", 1_000)):
        store, calls = new_store(dynamodb_local, table)
        window = store.get_last_k_turns("alice", session, 3)
        assert [t[0].text for t in window] == [f"question {n}" for n in range(turns - 3, turns)]
        assert calls.names == ["Query"]
        assert calls.params[0]["Limit"] == 4 and calls.params[0]["ConsistentRead"] is True
        assert calls.counts == [4]  # the head and three turns: nothing else was read


# -- concurrency across processes ---------------------------------------------------------------------

WRITER = """
import sys
from bedrock_agentcore.memory.constants import ConversationalMessage as M, MessageRole as R
from memory.dynamodb import DynamoDBStore, make_client
store = DynamoDBStore(make_client("us-west-2", sys.argv[1]), sys.argv[2])
w = int(sys.argv[3])
for n in range(20):
    q, a = f"question {w * 100 + n}", f"answer {w * 100 + n}"
    print(store.add_turns("alice", "busy", [M(q, R.USER), M(a, R.ASSISTANT)]), flush=True)
"""


def test_writers_in_separate_processes_get_distinct_gap_free_counts(dynamodb_local: DynamoDBLocal, table: str) -> None:
    """Each process is a replica: only the conditional write keeps them apart."""
    env = {**os.environ, **CLIENT_ENV}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, dynamodb_local.endpoint, table, str(w)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, text=True) for w in range(4)]
    counts = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        counts += [int(line) for line in out.split()]
    assert sorted(counts) == list(range(1, 81))
    store, _ = new_store(dynamodb_local, table)
    turns = store.get_last_k_turns("alice", "busy", 200)
    assert len(turns) == 80 and len(store.list_events("alice", "busy")) == 80
    for turn in turns:
        assert [m.role for m in turn] == [USER, ASSISTANT]
        assert turn[0].text.replace("question", "answer") == turn[1].text


# -- item size ---------------------------------------------------------------------------------------

def test_a_message_too_large_for_one_item_is_split_and_every_item_stays_under_400_kb(
        dynamodb_local: DynamoDBLocal, table: str) -> None:
    store, _ = new_store(dynamodb_local, table)
    big = "é🌍 long message " * 60_000  # 1,020,000 characters, 1,560,000 bytes of UTF-8
    store.add_turns("alice", "s1", [ConversationalMessage(big, USER), ConversationalMessage("ok", ASSISTANT)])
    store.add_turns("alice", "s1", exchange(2))
    stored = items(dynamodb_local, table)
    assert len(stored) > 4  # the head, the big turn in parts, the small turn in one
    assert max(item_size(i) for i in stored) < 400 * 1024
    assert max(len(i["body"]["S"].encode()) for i in stored if "body" in i) <= PART_BYTES
    fresh, _ = new_store(dynamodb_local, table)
    turns = fresh.get_last_k_turns("alice", "s1", 2)
    assert [[m.text for m in t] for t in turns] == [[big, "ok"], ["question 2", "answer 2"]]
    assert [m.text for m in fresh.list_events("alice", "s1")[0].messages] == [big, "ok"]


def test_a_turn_too_large_for_one_transaction_is_a_400_that_stores_nothing_and_one_that_fits_is_kept(http) -> None:
    client, store, _ = http
    status, body = post(client, "x" * 2_000_000)  # echoed back: 4,000,000 bytes for the turn
    assert status == 400
    assert body == {"error": body["error"]} and "too large for the dynamodb session store" in body["error"]
    assert store.list_events("default_user", "conv") == []
    status, body = post(client, "y" * 1_500_000)  # 3,000,000 bytes: split over nine items, stored whole
    assert (status, body["message_count"]) == (200, 1)
    [[user, reply]] = store.get_last_k_turns("default_user", "conv", 3)
    assert user.text == "y" * 1_500_000 and reply.text == f"You said '{'y' * 1_500_000}'"


def test_the_store_refuses_a_turn_past_the_transaction_limit_before_any_call(dynamodb_local, table) -> None:
    store, calls = new_store(dynamodb_local, table)
    with pytest.raises(BadRequest) as info:
        store.add_turns("alice", "s1", [ConversationalMessage("z" * 3_600_000, USER)])
    assert info.value.status == 400 and calls.names == []


# -- keys and deletes ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("first", "second"),
    [(("1:a", "b"), ("1", "a:1:b")), (("a#", "b"), ("a", "#b")), (("", "ab"), ("a", "b")),
     (("turn#meta", "s"), ("turn", "meta#s")), (("é", "s"), ("e", "s")), (("a:1:b", ""), ("a", "b:0:"))],
)
def test_length_prefixed_keys_never_collide_whatever_the_ids(dynamodb_local, table, first, second) -> None:
    assert session_pk(*first) != session_pk(*second)
    store, _ = new_store(dynamodb_local, table)
    store.add_turns(*first, exchange(1))
    assert store.get_last_k_turns(*second, 10) == []
    assert store.delete_session(*second) == 0
    assert len(store.get_last_k_turns(*first, 10)) == 1


def test_delete_removes_every_item_of_the_session_and_nothing_else(dynamodb_local, table) -> None:
    store, _ = new_store(dynamodb_local, table)
    for n in range(30):  # more than one BatchWriteItem (25 keys each)
        store.add_turns("alice", "s1", exchange(n))
    store.put_summary("alice", "s1", Summary("so far", 20))
    store.add_turns("alice", "s2", exchange(1))
    store.add_turns("bob", "s1", exchange(1))
    before = {(i["pk"]["S"], i["sk"]["S"]) for i in items(dynamodb_local, table)}
    assert store.delete_session("alice", "s1") == 30
    after = {(i["pk"]["S"], i["sk"]["S"]) for i in items(dynamodb_local, table)}
    assert after == {key for key in before if key[0] != session_pk("alice", "s1")}
    assert store.add_turns("alice", "s1", exchange(1)) == 1


def test_an_actors_sessions_are_found_newest_first_through_the_index_without_a_scan(dynamodb_local, table) -> None:
    """The ``sessions_by_actor`` index the contract's ``list_sessions`` will read."""
    store, _ = new_store(dynamodb_local, table)
    for session in ("first", "second", "third"):
        store.add_turns("alice", session, exchange(1))
        time.sleep(0.01)
    store.add_turns("bob", "other", exchange(1))
    found = dynamodb_local.client().query(
        TableName=table, IndexName=ACTOR_INDEX, KeyConditionExpression="actor_key = :a",
        ExpressionAttributeValues={":a": {"S": actor_key("alice")}}, ScanIndexForward=False)["Items"]
    assert [i["session_id"]["S"] for i in found] == ["third", "second", "first"]
    assert all(i["sk"]["S"] == META_SK for i in found)


# -- TTL -------------------------------------------------------------------------------------------

def test_every_item_carries_the_ttl_attribute_and_outlives_the_session_as_writes_slide_it(
        dynamodb_local, table, monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB deletes each item at its own ``expires_at``: no turn of a live session may go first."""
    import time as time_module

    now = [2_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    store, _ = new_store(dynamodb_local, table, ttl=60)
    for n in range(6):  # a write every 50 s: the session never expires, and lives 250 s
        store.add_turns("alice", "s1", exchange(n))
        stored = items(dynamodb_local, table)
        [head] = [i for i in stored if i["sk"]["S"] == META_SK]
        session_end = int(head["expires_at"]["N"])
        assert session_end == int(now[0]) + 60
        assert all(int(i["expires_at"]["N"]) >= session_end for i in stored)
        now[0] += 50
    assert len(store.get_last_k_turns("alice", "s1", 10)) == 6


def test_without_a_ttl_no_item_expires_even_after_one_was_set(dynamodb_local, table) -> None:
    DynamoDBStore(dynamodb_local.client(), table, ttl=60).add_turns("alice", "s1", exchange(1))
    store = DynamoDBStore(dynamodb_local.client(), table)  # SESSION_TTL switched off
    assert store.add_turns("alice", "s1", exchange(2)) == 2
    assert [i for i in items(dynamodb_local, table) if "expires_at" in i] == []


# -- the table at start-up ------------------------------------------------------------------------

def settings_for(engine: DynamoDBLocal, table: str, **env: str) -> Settings:
    return Settings.from_env({"MEMORY_BACKEND": "dynamodb", "DYNAMODB_TABLE": table,
                              "DYNAMODB_ENDPOINT_URL": engine.endpoint, **env})


def test_a_missing_table_stops_start_up_with_one_line(dynamodb_local: DynamoDBLocal, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "agent.py")], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "MODEL_PROVIDER": "echo", "MEMORY_BACKEND": "dynamodb",
             "DYNAMODB_TABLE": "no-such-table", "DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint, **CLIENT_ENV},
    )
    assert result.returncode == 2
    # (botocore logs where it found the credentials at INFO: a log line, not part of the error)
    assert [line for line in result.stderr.strip().splitlines() if " INFO botocore." not in line] == [
        "configuration error: DYNAMODB_TABLE='no-such-table' does not exist (create it with "
        "`python -m memory.dynamodb create-table` or DYNAMODB_CREATE_TABLE=on)"]


def test_a_table_of_another_shape_or_without_ttl_is_a_config_error(dynamodb_local, aws_env) -> None:
    client = dynamodb_local.client()
    name = unique_table()
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    try:
        with pytest.raises(ConfigError, match="does not have the session store's schema: key schema"):
            create_store(settings_for(dynamodb_local, name))
    finally:
        client.delete_table(TableName=name)
    name = unique_table()
    create_table(client, name)
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": False,
                                                                         "AttributeName": "expires_at"})
    try:
        assert isinstance(create_store(settings_for(dynamodb_local, name)), DynamoDBStore)
        with pytest.raises(ConfigError, match="SESSION_TTL is set but the table's TTL is not enabled"):
            create_store(settings_for(dynamodb_local, name, SESSION_TTL="3600"))
    finally:
        client.delete_table(TableName=name)


def test_create_table_on_start_up_or_from_the_command_line_makes_a_table_the_store_accepts(
        dynamodb_local: DynamoDBLocal, aws_env) -> None:
    client = dynamodb_local.client()
    first, second = unique_table(), unique_table()
    try:
        store = create_store(settings_for(dynamodb_local, first, DYNAMODB_CREATE_TABLE="on", SESSION_TTL="3600"))
        assert store.add_turns("alice", "s1", exchange(1)) == 1
        ttl = client.describe_time_to_live(TableName=first)["TimeToLiveDescription"]
        assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
        result = subprocess.run(
            [sys.executable, "-m", "memory.dynamodb", "create-table"], capture_output=True, text=True, timeout=60,
            cwd=ROOT, env={"PATH": "/usr/bin:/bin", "DYNAMODB_TABLE": second,
                           "DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint, **CLIENT_ENV})
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"table '{second}' is ready" in result.stdout
        create_store(settings_for(dynamodb_local, second, SESSION_TTL="60"))  # passes the start-up check
    finally:
        for name in (first, second):
            if name in client.list_tables()["TableNames"]:
                client.delete_table(TableName=name)


# -- outages --------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", ["ProvisionedThroughputExceededException", "ThrottlingException",
                                   "RequestLimitExceeded", "InternalServerError"])
def test_throttling_is_a_503_naming_the_store_and_the_next_request_works(error: str, aws_env) -> None:
    """Stubbed answers, validated against DynamoDB's own service model (botocore's retries are not
    run by the Stubber: each error stands for what is left after them)."""
    client = make_client("us-west-2", "http://127.0.0.1:9")
    store = DynamoDBStore(client, "sessions")
    settings = replace(Settings.from_env({}), memory_backend="dynamodb", model_provider="echo")
    agent.set_assistant(Assistant(settings, store, ScriptedModel(echo=True)))
    try:
        with Stubber(client) as stubber, TestClient(agent.app) as http:
            stubber.add_client_error("query", error, "slow down", 400)
            status, body = post(http, "one")
            assert status == 503
            assert body == {"error": f"session store 'dynamodb' is unavailable: {error}: slow down"}
            stubber.add_response("query", {"Items": [], "Count": 0, "ScannedCount": 0})
            stubber.add_client_error("transact_write_items", "TransactionCanceledException", "cancelled", 400,
                                     response_meta={}, modeled_fields={"CancellationReasons": [
                                         {"Code": "ThrottlingError", "Message": "throttled"}]})
            status, body = post(http, "one")
            assert status == 503 and "session store 'dynamodb' is unavailable: TransactionCanceled" in body["error"]
            stubber.add_response("query", {"Items": [], "Count": 0, "ScannedCount": 0})
            stubber.add_response("transact_write_items", {})
            status, body = post(http, "one")
            assert (status, body["message_count"]) == (200, 1)
            stubber.assert_no_pending_responses()
    finally:
        agent.set_assistant(None)


def test_an_endpoint_that_is_down_is_a_503_the_server_survives_and_recovers_with_every_turn(tmp_path: Path) -> None:
    """The real server over a private DynamoDB Local (tables in files) that is stopped and started again."""
    engine = start_or_skip(DynamoDBLocal(db_path=tmp_path / "ddb"), "DynamoDB Local")
    app = Server({"MEMORY_BACKEND": "dynamodb", "DYNAMODB_ENDPOINT_URL": engine.endpoint,
                  "DYNAMODB_TABLE": "sessions", "DYNAMODB_CREATE_TABLE": "on", **CLIENT_ENV}).start()
    try:
        assert app.invoke({"message": "one"}, "conv1")[1]["message_count"] == 1
        assert app.invoke({"message": "two"}, "conv1")[1]["message_count"] == 2
        engine.stop()
        status, body = app.invoke({"message": "three"}, "conv1")
        assert status == 503
        assert set(body) == {"error"} and "session store 'dynamodb' is unavailable" in body["error"]
        assert app.process.poll() is None
        engine = DynamoDBLocal(engine.port, db_path=tmp_path / "ddb").start()
        status, body = app.invoke({"message": "three"}, "conv1")
        assert (status, body["message_count"], body["history_length"]) == (200, 3, 2)
        assert app.invoke({"message": "other"}, "conv2")[1]["message_count"] == 1
    finally:
        app.stop()
        engine.stop()


def test_a_hung_endpoint_fails_the_request_with_a_503_and_the_next_one_works(dynamodb_local, table) -> None:
    client = dynamodb_local.client(read_timeout=0.5, connect_timeout=0.5,
                                   retries={"mode": "standard", "total_max_attempts": 1})
    store = DynamoDBStore(client, table)
    settings = replace(Settings.from_env({}), memory_backend="dynamodb", model_provider="echo")
    model = ScriptedModel(echo=True)
    agent.set_assistant(Assistant(settings, store, model))
    try:
        with TestClient(agent.app) as http:
            assert post(http, "one")[1]["message_count"] == 1
            dynamodb_local.freeze()
            try:
                status, body = post(http, "two")
            finally:
                dynamodb_local.thaw()
            assert status == 503 and "session store 'dynamodb' is unavailable" in body["error"]
            assert "timeout" in body["error"].lower()
            assert len(model.calls) == 1  # the history read failed before the model was asked
            status, body = post(http, "two")
            assert (status, body["message_count"], body["history_length"]) == (200, 2, 1)
    finally:
        agent.set_assistant(None)


def test_store_errors_name_the_store(aws_env) -> None:
    store = DynamoDBStore(make_client("us-west-2", f"http://127.0.0.1:{free_port()}"), "sessions")
    with pytest.raises(StoreUnavailable) as info:
        store.add_turns("alice", "s1", exchange(1))
    assert info.value.status == 503 and info.value.store == "dynamodb"
