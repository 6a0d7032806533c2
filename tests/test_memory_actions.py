"""What is remembered about an actor, seen and corrected by the user: ``list_memories``, ``delete_memory``
and the recalled records' text in an ``explain`` report, through POST /invocations.

Against the real ``service.Assistant`` with local long-term memory (SQLite), and a real server
(``python agent.py``) for a delete that must outlive a restart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import agent
from longterm.local import LocalLongTermMemory
from memory.sqlite import SQLiteStore
from service import Assistant
from tests.helpers.longterm_helpers import embedder
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.server import Server
from tests.helpers.longterm_http import http, ltm_assistant, ltm_settings, replica  # noqa: F401 (fixtures)
from tests.test_longterm_http import FACT, QUESTION, GatedRecords, ctx, say, search

OTHER_FACT = "I collect stamps from Norway"


def invoke(http: TestClient, body: dict):
    """POST ``body`` as ASCII JSON, so a lone surrogate reaches the server as the ``\\ud800`` escape a client sends."""
    return http.post("/invocations", content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def memories(http: TestClient, actor: str, **fields: object) -> dict:
    response = invoke(http, {"action": "list_memories", "actor_id": actor, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def delete(http: TestClient, actor: str, record_id: object):
    return invoke(http, {"action": "delete_memory", "actor_id": actor, "record_id": record_id})


def record_of(http: TestClient, actor: str, text: str) -> dict:
    return next(m for m in memories(http, actor, limit=100)["memories"] if m["text"] == text)


# -- list_memories -----------------------------------------------------------------------------

def test_list_memories_shows_what_is_remembered_newest_first_in_pages(http: TestClient) -> None:
    say(http, "alice", "s1", FACT)
    say(http, "alice", "s2", OTHER_FACT)
    say(http, "bob", "b1", "I collect stamps from Chile")
    first = memories(http, "alice", limit=3)
    assert [m["text"] for m in first["memories"]] == ["You said 'I collect stamps from Norway'", OTHER_FACT,
                                                      f"You said '{FACT}'"]
    assert [(m["session_id"], m["turn"], m["role"]) for m in first["memories"]] == [
        ("s2", 1, "assistant"), ("s2", 1, "user"), ("s1", 1, "assistant")]
    assert set(first["memories"][0]) == {"record_id", "text", "role", "session_id", "turn", "created_at"}
    second = memories(http, "alice", limit=3, cursor=first["next_cursor"])
    assert [m["text"] for m in second["memories"]] == [FACT] and second["next_cursor"] is None
    assert second["actor_id"] == "alice"  # bob's records are never listed for alice
    assert [m["text"] for m in memories(http, "bob")["memories"]] == ["You said 'I collect stamps from Chile'",
                                                                      "I collect stamps from Chile"]


@pytest.mark.parametrize("fields, says", [
    ({"limit": 0}, "'limit' must be an integer from 1 to 100"),
    ({"limit": 10**400}, "'limit' must be an integer from 1 to 100, got a huge integer"),
    ({"cursor": 7}, "'cursor' must be a string"),
    ({"cursor": "\ud800"}, "'cursor' holds a lone surrogate"),
    ({"cursor": "not-a-cursor"}, "'cursor' is not a cursor this server issued"),
    ({"cursor": {"nested": ["x"]}}, "'cursor' must be a string"),
])
def test_bad_list_memories_input_is_a_400_naming_the_field(http: TestClient, fields: dict, says: str) -> None:
    response = invoke(http, {"action": "list_memories", "actor_id": "alice", **fields})
    assert response.status_code == 400 and says in response.json()["error"], response.text


# -- delete_memory -----------------------------------------------------------------------------

def test_a_deleted_memory_is_never_listed_searched_or_recalled_again(http: TestClient,
                                                                    ltm_assistant: Assistant) -> None:
    say(http, "alice", "s1", FACT)
    say(http, "alice", "s1", OTHER_FACT)
    user_record = record_of(http, "alice", FACT)
    echoed = record_of(http, "alice", f"You said '{FACT}'")
    for record in (user_record, echoed):  # at once: the reply's vector may still be on its way
        response = delete(http, "alice", record["record_id"])
        assert response.status_code == 200, response.text
        assert response.json() == {"action": "delete_memory", "record_id": record["record_id"], "deleted": 1,
                                   "actor_id": "alice"}
    assert ltm_assistant.ltm is not None and ltm_assistant.ltm.flush(30)  # a pending vector brings nothing back
    listed = {m["text"] for m in memories(http, "alice")["memories"]}
    assert listed == {OTHER_FACT, f"You said '{OTHER_FACT}'"}
    assert all("cello" not in m["text"] for m in search(http, "alice", "daughter cello Ingrid"))
    answer = say(http, "alice", "s2", QUESTION, explain=True)
    assert all("cello" not in item["text"] for item in answer["memory"]["long_term"])
    again = delete(http, "alice", user_record["record_id"])
    assert again.status_code == 404  # deleted stays deleted: a second delete finds nothing


def test_a_vector_on_its_way_never_brings_a_deleted_memory_back(tmp_path: Path) -> None:
    """The reply's vector is embedded and held just before it is added while the record is deleted over HTTP."""
    settings = ltm_settings(tmp_path)
    records = GatedRecords(settings.ltm_db)
    assistant = replica(settings, ScriptedModel(echo=True), LocalLongTermMemory(records, embedder()))
    agent.set_assistant(assistant)
    try:
        with TestClient(agent.app) as http:
            say(http, "alice", "s1", FACT)
            assert records.entered.wait(30)  # the writer holds the reply's vector
            echoed = record_of(http, "alice", f"You said '{FACT}'")
            assert delete(http, "alice", echoed["record_id"]).status_code == 200
            records.release.set()
            assert assistant.ltm is not None and assistant.ltm.flush(30)
            assert [m["text"] for m in memories(http, "alice")["memories"]] == [FACT]
            assert all(m["role"] == "user" for m in search(http, "alice", "daughter Ingrid cello"))
            recalled = say(http, "alice", "s2", QUESTION, explain=True)["memory"]["long_term"]
            assert echoed["record_id"] not in {item["record_id"] for item in recalled}
    finally:
        records.release.set()
        agent.set_assistant(None)
        assistant.close()


def test_another_actors_record_id_is_the_same_404_as_an_unknown_one_and_stays(http: TestClient) -> None:
    say(http, "bob", "b1", "I collect stamps from Chile")
    bobs = record_of(http, "bob", "I collect stamps from Chile")
    say(http, "alice", "s1", FACT)
    as_alice = delete(http, "alice", bobs["record_id"])
    unknown = delete(http, "alice", "0" * 32)
    assert as_alice.status_code == unknown.status_code == 404
    assert as_alice.json() == unknown.json()  # nothing tells alice that bob's id exists
    assert "error" in as_alice.json() and bobs["record_id"] not in as_alice.text
    assert record_of(http, "bob", "I collect stamps from Chile") == bobs  # still there


@pytest.mark.parametrize("record_id, says", [
    (None, "delete_memory needs a 'record_id' string"),
    (42, "'record_id' must be a string, got int"),
    (True, "'record_id' must be a string, got bool"),
    (["a"], "'record_id' must be a string, got list"),
    ({"$ne": None}, "'record_id' must be a string, got dict"),
    ("", "'record_id' must not be empty"),
    ("\ud800abc", "'record_id' holds a lone surrogate"),
    ("a" * 100_000, "'record_id' is 100000 characters long"),
])
def test_bad_record_ids_are_a_400_naming_the_field_and_delete_nothing(http: TestClient, record_id: object,
                                                                      says: str) -> None:
    say(http, "alice", "s1", FACT)
    body = {"action": "delete_memory", "actor_id": "alice"}
    if record_id is not None:
        body["record_id"] = record_id
    response = invoke(http, body)
    assert response.status_code == 400 and says in response.json()["error"], response.text
    assert len(memories(http, "alice")["memories"]) == 2


def test_without_long_term_memory_the_memory_actions_say_how_to_turn_it_on(tmp_path: Path) -> None:
    settings = ltm_settings(tmp_path)
    assistant = Assistant(settings, SQLiteStore(settings.session_db), ScriptedModel(echo=True))
    try:
        for body in ({"action": "list_memories"}, {"action": "delete_memory", "record_id": "x"}):
            answer = assistant.handle(body, ctx("s1"))
            assert answer.status_code == 400
            assert f"'{body['action']}' needs long-term memory, which is off" in json.loads(answer.body)["error"]
    finally:
        assistant.close()


# -- the explain report carries the recalled text -----------------------------------------------

def test_explain_shows_the_text_of_each_recalled_record(http: TestClient, ltm_assistant: Assistant) -> None:
    say(http, "alice", "s1", FACT)
    say(http, "bob", "b1", "My daughter plays the violin")
    assert ltm_assistant.ltm is not None and ltm_assistant.ltm.flush(30)
    items = say(http, "alice", "s2", QUESTION, explain=True)["memory"]["long_term"]
    # (the echo model's reply repeats the fact: a near-duplicate, collapsed into the user's own words)
    assert {(i["text"], i["role"]) for i in items} == {(FACT, "user")}
    listed = {m["record_id"]: m["text"] for m in memories(http, "alice")["memories"]}
    assert all(listed[i["record_id"]] == i["text"] for i in items)  # the ids a delete takes


# -- a real server: a delete outlives a restart ------------------------------------------------

def test_a_deleted_memory_stays_deleted_after_a_restart(tmp_path: Path) -> None:
    env = {"SESSION_DB": str(tmp_path / "sessions.db")}
    server = Server(env, log_path=tmp_path / "server.log").start(timeout=120)
    try:
        assert server.invoke({"message": FACT, "actor_id": "alice"}, "s1")[0] == 200
        status, body = server.invoke({"action": "list_memories", "actor_id": "alice"})
        assert status == 200
        doomed = next(m for m in body["memories"] if m["text"] == FACT)
        assert server.invoke({"action": "delete_memory", "actor_id": "alice",
                              "record_id": doomed["record_id"]}) == (200, {
            "action": "delete_memory", "record_id": doomed["record_id"], "deleted": 1, "actor_id": "alice"})
    finally:
        server.stop()
    server = Server(env, log_path=tmp_path / "server.log").start(timeout=120)
    try:
        status, body = server.invoke({"action": "list_memories", "actor_id": "alice"})
        assert status == 200 and [m["text"] for m in body["memories"]] == [f"You said '{FACT}'"]
        status, found = server.invoke({"action": "search_memory", "query": "daughter Ingrid", "actor_id": "alice"})
        assert status == 200 and FACT not in [m["text"] for m in found["memories"]]
        assert server.invoke({"action": "delete_memory", "actor_id": "alice",
                              "record_id": doomed["record_id"]})[0] == 404
    finally:
        server.stop()
