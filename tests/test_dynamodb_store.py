"""DynamoDB-only behaviour on the real engine (DynamoDB Local): service calls per turn (and per operation of
the extended contract), one Query per window read, conditional writes across processes, tombstones and
idempotency records, listing through the actor index, items under 400 KB, TTL, the table check at start-up,
and outages (throttling through botocore's Stubber; an endpoint stopped, hung and restarted for real)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from starlette.testclient import TestClient

import agent
from core.errors import AlreadyStored, BadRequest, ConfigError, InvalidCursor, SessionChanged, StoreUnavailable
from core.settings import Settings
from memory import create_store
from memory.base import StoredReply, Summary, Window, encode_cursor
from memory.dynamodb import (
    ACTOR_INDEX, META_SK, PART_BYTES, DynamoDBStore, actor_key, create_table, make_client, session_pk,
)
from service import Assistant
from tests.conftest import SESSION_HEADER, start_or_skip, unique_table
from tests.helpers.dynamodb_local import CLIENT_ENV, DynamoDBLocal
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.server import ROOT, Server, free_port, spare_port

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
    #: the operations made by the rolling summary's folds (their own threads, after the reply), not in ``names``
    fold_names: list[str] = field(default_factory=list)

    def attach(self, client: Any) -> Calls:
        client.meta.events.register("provide-client-params.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)
        return self

    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if threading.current_thread().name.startswith("fold-"):
            self.fold_names.append(model.name)
            return
        self.names.append(model.name)
        self.params.append(dict(params))

    def _after(self, parsed: dict[str, Any], **_: Any) -> None:
        if not threading.current_thread().name.startswith("fold-"):
            self.counts.append(parsed.get("Count"))

    def clear(self) -> None:
        self.names.clear()
        self.params.clear()
        self.counts.clear()
        self.fold_names.clear()


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
    folds = agent.get_assistant().folds
    for n in range(1, 4):  # new session, then a window filling up
        calls.clear()
        assert post(client, f"message {n}")[1]["message_count"] == n
        assert calls.names == ["Query", "TransactWriteItems"]
        assert folds.join(10)
    # turn 3 filled the window: after the reply, its fold read the summary and stored one (through turn 1)
    assert calls.fold_names == ["GetItem", "UpdateItem"]
    store.put_summary("default_user", "conv", Summary("the first turns", 2))
    calls.clear()
    status, body = post(client, "message 4")  # a full window: the summary comes with it, and is current
    assert (status, body["message_count"], body["history_length"]) == (200, 4, 3)
    assert calls.names == ["Query", "TransactWriteItems"]
    assert calls.params[0]["Limit"] == 4 and calls.params[0]["ScanIndexForward"] is False
    assert folds.join(10) and calls.fold_names == []  # the summary reaches far enough: no fold

    restarted, restarted_calls = new_store(dynamodb_local, table)  # nothing remembered
    agent.get_assistant().store = restarted
    assert post(client, "message 5")[1]["message_count"] == 5
    assert restarted_calls.names == ["Query", "TransactWriteItems"]
    assert folds.join(10)


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


def test_a_turn_of_the_extended_contract_costs_two_calls_keyed_or_not_after_a_restart_and_with_a_ttl(
        dynamodb_local, table, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_window`` (the head brings the generation and the count) + ``add_turns(generation=...)`` (an
    idempotency record rides in the same transaction). With SESSION_TTL, a load writes the session's new
    end only once less than half of the TTL is left: one ``UpdateItem`` then."""
    import time as time_module

    now = [4_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    for ttl in (None, 60):
        session = f"s-{ttl}"
        store, calls = new_store(dynamodb_local, table, ttl=ttl)
        for n in range(1, 4):
            calls.clear()
            window = store.load_window("alice", session, 3)
            assert (window.message_count, window.generation) == (n - 1, 0)
            assert store.add_turns("alice", session, exchange(n), generation=window.generation,
                                   idempotency_key=f"k{n}" if n == 2 else None) == n
            assert calls.names == ["Query", "TransactWriteItems"]
            now[0] += 10
        store, calls = new_store(dynamodb_local, table, ttl=ttl)  # a restart: nothing remembered
        window = store.load_window("alice", session, 3)
        assert store.add_turns("alice", session, exchange(4), generation=window.generation) == 4
        assert calls.names == ["Query", "TransactWriteItems"]
    store.add_turns("alice", "quiet", exchange(1))
    now[0] += 31  # 29 of the session's 60 s are left: this load restarts its expiry
    calls.clear()
    window = store.load_window("alice", "quiet", 3)
    assert store.add_turns("alice", "quiet", exchange(2), generation=window.generation) == 2
    assert calls.names == ["Query", "UpdateItem", "TransactWriteItems"]


def test_a_turn_storing_within_the_ttl_of_its_load_finds_its_session_alive_though_the_load_wrote_nothing(
        dynamodb_local, table, monkeypatch: pytest.MonkeyPatch) -> None:
    import time as time_module

    now = [5_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    store, calls = new_store(dynamodb_local, table, ttl=60)
    store.add_turns("alice", "loaded", exchange(1))
    store.add_turns("alice", "idle", exchange(1))
    now[0] += 20
    calls.clear()
    window = store.load_window("alice", "loaded", 5)
    assert calls.names == ["Query"]  # 40 s left: no write
    now[0] += 50  # the model took 50 s: past the session's stored end, within SESSION_TTL of the load
    assert store.add_turns("alice", "loaded", exchange(2), generation=window.generation) == 2
    assert [t[0].text for t in store.get_last_k_turns("alice", "loaded", 5)] == ["question 1", "question 2"]
    assert store.add_turns("alice", "idle", exchange(2)) == 1  # the control: no turn loaded it, it expired


def test_find_request_is_one_batch_read_and_never_answers_a_record_from_before_a_clear(dynamodb_local, table) -> None:
    store, calls = new_store(dynamodb_local, table)
    store.add_turns("alice", "s1", exchange(1), idempotency_key="k")
    long_key = "é" * 5_000  # any key: the record is keyed by its digest
    assert store.add_turns("alice", "s1", exchange(2), idempotency_key=long_key) == 2
    calls.clear()
    assert store.find_request("alice", "s1", "other") is None
    assert calls.names == ["BatchGetItem"]  # the head and the record
    calls.clear()
    assert store.find_request("alice", "s1", "k") == StoredReply(1, "answer 1")
    assert calls.names == ["BatchGetItem", "Query"]  # and the reply from the turn's own items
    assert store.find_request("alice", "s1", long_key) == StoredReply(2, "answer 2")
    [record] = [i for i in items(dynamodb_local, table) if i["sk"]["S"] == f"idem#{sha256(b'k').hexdigest()}"]
    store.delete_session("alice", "s1")
    dynamodb_local.client().put_item(TableName=table, Item=record)  # as if the clear had stopped before it
    replica, _ = new_store(dynamodb_local, table)
    assert replica.find_request("alice", "s1", "k") is None  # a record of an older epoch: from before the clear
    assert replica.add_turns("alice", "s1", exchange(5), idempotency_key="k") == 1  # stored, not AlreadyStored
    assert store.find_request("alice", "s1", "k") == StoredReply(1, "answer 5")


def test_a_clear_is_whole_even_when_deleting_the_old_items_fails(dynamodb_local, table) -> None:
    """The tombstone is the clear: the items it leaves behind are of an older epoch, which no read returns;
    the failure is a 503 and the next clear deletes them."""
    store, calls = new_store(dynamodb_local, table)
    for n in (1, 2, 3):
        store.add_turns("alice", "s1", exchange(n), idempotency_key=f"k{n}")
    assert store.put_summary("alice", "s1", Summary("so far", 2), generation=0) is True
    window = store.load_window("alice", "s1", 5)

    def throttled(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "BatchWriteItem")

    store.client.meta.events.register("before-call.dynamodb.BatchWriteItem", throttled)
    with pytest.raises(StoreUnavailable, match="ThrottlingException"):
        store.delete_session("alice", "s1")
    store.client.meta.events.unregister("before-call.dynamodb.BatchWriteItem", throttled)
    replica, _ = new_store(dynamodb_local, table)
    assert replica.load_window("alice", "s1", 5) == Window([], 1, 0)
    assert replica.list_events("alice", "s1") == [] and replica.get_history("alice", "s1", 10).turns == []
    assert replica.get_summary("alice", "s1") is None and replica.find_request("alice", "s1", "k1") is None
    assert replica.list_sessions("alice", 10).sessions == []
    with pytest.raises(SessionChanged):
        store.add_turns("alice", "s1", exchange(4), generation=window.generation)
    pk = session_pk("alice", "s1")
    assert len([i for i in items(dynamodb_local, table) if i["pk"]["S"] == pk]) == 7  # 3 + 3 left, the head
    assert replica.delete_session("alice", "s1") == 0
    assert [i["sk"]["S"] for i in items(dynamodb_local, table) if i["pk"]["S"] == pk] == [META_SK]


def test_a_clear_from_a_replica_whose_clock_is_behind_still_ends_the_old_life(
        dynamodb_local, table, monkeypatch: pytest.MonkeyPatch) -> None:
    import time as time_module

    now = [7_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    first, _ = new_store(dynamodb_local, table)
    second, calls = new_store(dynamodb_local, table)
    first.add_turns("alice", "s1", exchange(1))
    window = first.load_window("alice", "s1", 5)
    now[0] -= 30  # the second replica's clock is 30 s behind: its new epoch would not be newer
    assert second.delete_session("alice", "s1") == 1
    assert calls.names[:2] == ["UpdateItem", "UpdateItem"]  # refused once, then one past the stored epoch
    now[0] += 30
    with pytest.raises(SessionChanged):
        first.add_turns("alice", "s1", exchange(2), generation=window.generation)
    assert first.load_window("alice", "s1", 5) == Window([], 1, 0)
    assert first.add_turns("alice", "s1", exchange(3), generation=1) == 1
    assert [t[0].text for t in second.get_last_k_turns("alice", "s1", 5)] == ["question 3"]


def test_a_summary_written_after_a_clear_keeps_the_tombstone_and_lists_nothing(dynamodb_local, table) -> None:
    store, _ = new_store(dynamodb_local, table)
    store.add_turns("alice", "s1", exchange(1))
    store.delete_session("alice", "s1")
    assert store.put_summary("alice", "s1", Summary("late", 1), generation=0) is False  # from before the clear
    assert store.put_summary("alice", "s1", Summary("late", 1), generation=1) is False  # covers turns it lacks
    assert store.put_summary("alice", "s1", Summary("unchecked", 0)) is True
    assert store.load_window("alice", "s1", 5) == Window([], 1, 0)  # the generation stays
    assert store.list_sessions("alice", 10).sessions == []
    assert "actor_key" not in [i for i in items(dynamodb_local, table) if i["sk"]["S"] == META_SK][0]


def test_a_history_page_is_a_head_read_and_a_query_of_its_own_turns(dynamodb_local, table) -> None:
    writer, _ = new_store(dynamodb_local, table)
    for start in range(0, 200, 90):
        writer.add_turns("alice", "long", [m for n in range(start, min(200, start + 90)) for m in exchange(n)])
    store, calls = new_store(dynamodb_local, table)
    page = store.get_history("alice", "long", 5, before=101)
    assert [(t.turn, t.user) for t in page.turns] == [(n, f"question {n - 1}") for n in range(96, 101)]
    assert page.next_before == 96
    assert calls.names == ["GetItem", "Query"] and calls.counts == [None, 5]  # the page's five items, no more


def test_list_sessions_is_one_query_of_the_actor_index_and_expired_sessions_leave_it(
        dynamodb_local, table, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaces the index check written before ``list_sessions`` existed: newest first, through the
    ``sessions_by_actor`` index, never a Scan; expired sessions are skipped, the page still filled, and
    taken out of the index once."""
    import time as time_module

    now = [6_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    store, calls = new_store(dynamodb_local, table, ttl=60)
    for n in range(3):
        store.add_turns("alice", f"old{n}", exchange(n))
        now[0] += 1
    now[0] += 100
    for n in range(2):
        store.add_turns("alice", f"new{n}", exchange(n))
        now[0] += 1
    store.add_turns("bob", "theirs", exchange(1))
    calls.clear()
    page = store.list_sessions("alice", 2)
    assert [i.session_id for i in page.sessions] == ["new1", "new0"] and page.next_cursor is None
    assert calls.names[0] == "Query" and calls.params[0]["IndexName"] == ACTOR_INDEX and "Scan" not in calls.names
    indexed = dynamodb_local.client().query(
        TableName=table, IndexName=ACTOR_INDEX, KeyConditionExpression="actor_key = :a",
        ExpressionAttributeValues={":a": {"S": actor_key("alice")}}, ScanIndexForward=False)["Items"]
    assert [i["session_id"]["S"] for i in indexed] == ["new1", "new0"]
    assert all(i["sk"]["S"] == META_SK for i in indexed)
    calls.clear()
    assert [i.session_id for i in store.list_sessions("alice", 2).sessions] == ["new1", "new0"]
    assert calls.names == ["Query"] and calls.counts == [2]
    assert store.add_turns("alice", "old0", exchange(9)) == 1  # a new life: listed again
    assert [i.session_id for i in store.list_sessions("alice", 5).sessions] == ["old0", "new1", "new0"]


def test_a_cursor_pages_on_when_the_session_it_names_was_written_since(dynamodb_local, table) -> None:
    store, _ = new_store(dynamodb_local, table)
    for n in range(5):
        store.add_turns("alice", f"s{n}", exchange(n))
        time.sleep(0.002)
    page = store.list_sessions("alice", 2)
    assert [i.session_id for i in page.sessions] == ["s4", "s3"]
    store.add_turns("alice", "s3", exchange(9))  # now the newest: above the cursor
    rest = store.list_sessions("alice", 10, page.next_cursor)
    assert [i.session_id for i in rest.sessions] == ["s2", "s1", "s0"] and rest.next_cursor is None
    for forged in (encode_cursor(float("inf"), "s1"), encode_cursor(1e300, "s1")):  # well-formed, unusable here
        with pytest.raises(InvalidCursor):
            store.list_sessions("alice", 10, forged)


# -- concurrency across processes ---------------------------------------------------------------------

WRITERS = 8
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
    """Each process is a replica: only the conditional write keeps them apart. Eight writers in tight loops make
    losing streaks: a writer that just won writes its next turn before a loser can, so the losers must outlast
    the streak (``writes.write_attempts``) rather than give up after a count of tries, which failed every run."""
    env = {**os.environ, **CLIENT_ENV}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, dynamodb_local.endpoint, table, str(w)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, text=True) for w in range(WRITERS)]
    counts = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        counts += [int(line) for line in out.split()]
    assert sorted(counts) == list(range(1, WRITERS * 20 + 1))
    store, _ = new_store(dynamodb_local, table)
    turns = store.get_last_k_turns("alice", "busy", 400)
    assert len(turns) == WRITERS * 20 and len(store.list_events("alice", "busy")) == WRITERS * 20
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


def test_a_retried_turn_whose_reply_is_split_over_items_answers_the_whole_reply(dynamodb_local, table) -> None:
    store, _ = new_store(dynamodb_local, table)
    big = "réponse 🌍 " * 80_000  # 1,040,000 bytes of UTF-8: three parts
    store.add_turns("alice", "s1", exchange(1))
    turn = [ConversationalMessage("question 2", USER), ConversationalMessage(big, ASSISTANT)]
    assert store.add_turns("alice", "s1", turn, idempotency_key="retry-me") == 2
    with pytest.raises(AlreadyStored) as info:
        new_store(dynamodb_local, table)[0].add_turns("alice", "s1", turn, idempotency_key="retry-me")
    assert (info.value.message_count, info.value.reply) == (2, big)
    assert store.find_request("alice", "s1", "retry-me") == StoredReply(2, big)
    assert len(store.list_events("alice", "s1")) == 2


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


def test_delete_removes_every_item_of_the_session_but_its_tombstone_and_nothing_else(
        dynamodb_local, table, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deliberately changed with the extended contract: the head stays, as the tombstone that keeps the
    generation (7 days), unlisted and empty; every fragment and idempotency record goes."""
    import time as time_module

    now = [3_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    store, calls = new_store(dynamodb_local, table)
    for n in range(30):  # more than one BatchWriteItem (25 keys each)
        store.add_turns("alice", "s1", exchange(n), idempotency_key=f"k{n}" if n % 3 == 0 else None)
    store.put_summary("alice", "s1", Summary("so far", 20))
    store.add_turns("alice", "s2", exchange(1))
    store.add_turns("bob", "s1", exchange(1))
    before = {(i["pk"]["S"], i["sk"]["S"]) for i in items(dynamodb_local, table)}
    calls.clear()
    now[0] += 1
    assert store.delete_session("alice", "s1") == 30
    assert calls.names == ["UpdateItem", "Query", "BatchWriteItem", "BatchWriteItem"]  # 10 records, 30 fragments
    stored = items(dynamodb_local, table)
    pk = session_pk("alice", "s1")
    assert {(i["pk"]["S"], i["sk"]["S"]) for i in stored} == {key for key in before if key[0] != pk} | {(pk, META_SK)}
    [tombstone] = [i for i in stored if i["pk"]["S"] == pk]
    assert {name: tombstone[name] for name in ("generation", "turns", "users", "events", "expires_at")} == {
        "generation": {"N": "1"}, "turns": {"N": "0"}, "users": {"N": "0"}, "events": {"N": "0"},
        "expires_at": {"N": str(int(now[0]) + 7 * 24 * 3600)}}
    assert not {"actor_key", "summary", "first_message", "live_until"} & set(tombstone)
    assert store.add_turns("alice", "s1", exchange(1), generation=1) == 1
    assert "expires_at" not in [i for i in items(dynamodb_local, table) if i["sk"]["S"] == META_SK
                                and i["pk"]["S"] == pk][0]  # written again: the head persists (no SESSION_TTL)


# -- TTL -------------------------------------------------------------------------------------------

def test_every_item_carries_the_ttl_attribute_and_outlives_the_session_as_writes_slide_it(
        dynamodb_local, table, monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB deletes each item at its own ``expires_at``: no turn of a live session may go first. (Changed
    with the extended contract: the session's end is ``live_until``; the head, which holds the generation,
    is reclaimed 7 days after it; an idempotency record is kept SESSION_TTL.)"""
    import time as time_module

    now = [2_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    store, _ = new_store(dynamodb_local, table, ttl=60)
    for n in range(6):  # a write every 50 s: the session never expires, and lives 250 s
        store.add_turns("alice", "s1", exchange(n), idempotency_key=f"k{n}")
        stored = items(dynamodb_local, table)
        [head] = [i for i in stored if i["sk"]["S"] == META_SK]
        session_end = float(head["live_until"]["N"])
        assert session_end == now[0] + 60
        assert int(head["expires_at"]["N"]) == int(now[0]) + 7 * 24 * 3600
        assert all(int(i["expires_at"]["N"]) >= session_end for i in stored if i["sk"]["S"].startswith("turn#"))
        records = [int(i["expires_at"]["N"]) for i in stored if i["sk"]["S"].startswith("idem#")]
        assert len(records) == n + 1 and max(records) == int(now[0]) + 60
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
        env={"PATH": "/usr/bin:/bin", "MODEL_PROVIDER": "echo", "MEMORY_BACKEND": "dynamodb", **spare_port(),
             "DYNAMODB_TABLE": "no-such-table", "DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint, **CLIENT_ENV},
    )
    assert result.returncode == 2
    # (botocore logs where it found the credentials at INFO: a log line, not part of the error)
    assert [line for line in result.stderr.strip().splitlines() if " INFO botocore." not in line] == [
        "configuration error: DYNAMODB_TABLE='no-such-table' does not exist (create it with "
        "`python -m memory.dynamodb create-table` or DYNAMODB_CREATE_TABLE=on)"]


def test_a_table_of_another_shape_or_without_ttl_is_a_config_error(dynamodb_local, aws_env,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
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
    name = unique_table()  # the actor index of an earlier layout: list_sessions could not read its fields
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in
                              (("pk", "S"), ("sk", "S"), ("actor_key", "S"), ("updated_at", "N"))],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": ACTOR_INDEX, "Projection": {"ProjectionType": "KEYS_ONLY"},
                                 "KeySchema": [{"AttributeName": "actor_key", "KeyType": "HASH"},
                                               {"AttributeName": "updated_at", "KeyType": "RANGE"}]}])
    try:
        with pytest.raises(ConfigError, match="index 'sessions_by_actor' does not project first_message, "
                                              "live_until, session_id, users"):
            create_store(settings_for(dynamodb_local, name))
    finally:
        client.delete_table(TableName=name)
    name = unique_table()
    create_table(client, name)
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": False,
                                                                         "AttributeName": "expires_at"})
    try:
        with caplog.at_level(logging.WARNING, logger="memory.dynamodb"):
            assert isinstance(create_store(settings_for(dynamodb_local, name)), DynamoDBStore)
        assert "TTL is not enabled on 'expires_at': idempotency records and the tombstones" in caplog.text
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
