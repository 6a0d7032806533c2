"""Corrupt or foreign data in the store is skipped with a warning, never a 500, through the handler, on every backend.

Every backend gets events of roles a conversation does not have (``OTHER``, ``TOOL``, as other tools
write them); then each backend's own kind of damage: SQLite rows of an unknown role or with a blob
where the text should be, Redis entries that are not JSON or not a message (also on a Redis Cluster),
DynamoDB fragments that are not JSON, not messages or missing a part, AgentCore events whose
payload is a blob that is not ours and a "summary" event without a summary. The next chat turn, the
summary action and the clear action all answer 200, the model sees a history that alternates
user / assistant, and no damaged or foreign text reaches it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from bedrock_agentcore.memory.constants import BlobMessage, ConversationalMessage, MessageRole
from starlette.testclient import TestClient

from service import Assistant
from memory.agentcore import SUMMARY_KEY, AgentCoreStore
from memory.base import SessionStore
from memory.dynamodb import DynamoDBStore, FragmentKey, session_pk
from memory.redis_store import RedisStore
from tests.conftest import SESSION_HEADER
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.session_helpers import chat_calls

USER, ASSISTANT = MessageRole.USER, MessageRole.ASSISTANT
ACTOR, SESSION = "default_user", "conv"
FOREIGN = ("a system note", "tool output", "ROBOT", "beep", "not json", "c0ffee", "not ours", "junk")


def damage_sqlite(store: SessionStore, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "sessions.db", isolation_level=None)
    db.execute("UPDATE messages SET role = 'ROBOT' WHERE text = 'answer 2'")
    db.execute("UPDATE messages SET text = X'C0FFEE' WHERE text = 'question 3'")  # a blob, not text
    db.close()


def damage_redis(store: SessionStore, tmp_path: Path) -> None:
    assert isinstance(store, RedisStore)
    msgs = store.keys(ACTOR, SESSION)[1]
    raw = store._redis  # the store's own client, on the test's private key prefix
    raw.lset(msgs, 3, "not json {")  # answer 2
    raw.lset(msgs, 4, json.dumps(["not", "a", "message"]))  # question 3
    raw.rpush(msgs, json.dumps({"role": "ROBOT", "text": "beep"}))


def damage_agentcore(store: SessionStore, tmp_path: Path) -> None:
    assert isinstance(store, AgentCoreStore)
    session = store.manager.create_memory_session(ACTOR, SESSION)  # another tool writing to the same session
    session.add_turns([BlobMessage({"not ours": True})])
    session.add_turns([BlobMessage({"junk": "no summary here"})], metadata={SUMMARY_KEY: {"stringValue": "1"}})


def damage_dynamodb(store: SessionStore, tmp_path: Path) -> None:
    assert isinstance(store, DynamoDBStore)
    pk = session_pk(ACTOR, SESSION)
    fragments = {FragmentKey.parse(i["sk"]["S"]).turn: i for i in store.client.query(
        TableName=store.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :f)",
        ExpressionAttributeValues={":pk": {"S": pk}, ":f": {"S": "turn#"}})["Items"] if i.get("starts_turn", {}).get("BOOL")}
    fragments[2]["body"] = {"S": "not json {"}  # answer 2 and question 2
    fragments[3]["body"] = {"S": json.dumps(["not", "a", "message"])}
    robot = FragmentKey.parse(fragments[3]["sk"]["S"])
    store.client.put_item(TableName=store.table, Item={  # a foreign role, and a fragment whose part is missing
        **fragments[3], "sk": {"S": FragmentKey(robot.epoch, robot.turn, 90, 0).sk},
        "body": {"S": json.dumps([{"role": "ROBOT", "text": "beep"}])}})
    store.client.put_item(TableName=store.table, Item={
        **fragments[3], "sk": {"S": FragmentKey(robot.epoch, robot.turn, 91, 0).sk}, "parts": {"N": "2"},
        "body": {"S": json.dumps([{"role": "USER", "text": "junk"}])}})
    for turn in (2, 3):
        store.client.put_item(TableName=store.table, Item=fragments[turn])


DAMAGE = {"sqlite": damage_sqlite, "redis": damage_redis, "agentcore": damage_agentcore,
          "dynamodb": damage_dynamodb}


def test_corrupt_and_foreign_entries_are_skipped_with_a_warning_never_a_500(
    client: TestClient, assistant: Assistant, model: ScriptedModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assistant.settings = replace(assistant.settings, memory_k=2)  # the summary is read too (a full window)
    store = assistant.store
    for n in (1, 2, 3):
        store.add_turns(ACTOR, SESSION, [ConversationalMessage(f"question {n}", USER),
                                         ConversationalMessage(f"answer {n}", ASSISTANT)])
    store.add_turns(ACTOR, SESSION, [ConversationalMessage("a system note", MessageRole.OTHER)])
    store.add_turns(ACTOR, SESSION, [ConversationalMessage("tool output", MessageRole.TOOL)])
    if store.name in DAMAGE:
        DAMAGE[store.name](store, tmp_path)

    headers = {SESSION_HEADER: SESSION}
    with caplog.at_level(logging.WARNING):
        response = client.post("/invocations", json={"message": "next question"}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["response"], body["message_count"]) == ("You said 'next question'", 4)

        [call] = [model.calls[i] for i in chat_calls(model)]
        roles = [m["role"] for m in call]
        assert roles == ["user", "assistant"] * body["history_length"] + ["user"]
        seen = " ".join(text for m in call for block in m["content"] for text in [block.get("text", "")])
        assert not [f for f in FOREIGN if f.lower() in seen.lower()], seen
        assert "question 1" not in seen  # k=2: only the newest two turns (what of them survived)

        for action in ("summarize_session", "clear_session"):
            answer = client.post("/invocations", json={"action": action}, headers=headers)
            assert answer.status_code == 200, answer.text
    if store.name in DAMAGE:
        assert "skipping" in caplog.text
    again = client.post("/invocations", json={"message": "fresh"}, headers=headers).json()
    assert (again["message_count"], again["history_length"]) == (1, 0)
