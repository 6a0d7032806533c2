"""Long-term memory through POST /invocations: cross-session recall, isolation, forget, clear, bad input.

Runs against ``tests.longterm_wiring.LongTermAssistant`` (the documented wiring) until the lead wires
long-term memory into ``service.Assistant``; then the fixture builds the real Assistant instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import agent
from core.settings import Settings
from memory.sqlite import SQLiteStore
from tests.conftest import ACTOR_HEADER
from tests.longterm_helpers import local_ltm
from tests.longterm_wiring import LongTermAssistant
from tests.scripted_model import ScriptedModel
from tests.test_http import invoke

FACT = "Remember this: my daughter's name is Ingrid and she plays the cello"


@pytest.fixture
def ltm_assistant(tmp_path: Path, model: ScriptedModel) -> Iterator[LongTermAssistant]:
    settings = replace(Settings.from_env({}), session_db=tmp_path / "sessions.db", model_provider="echo",
                       ltm_min_score=0.0)
    assistant = LongTermAssistant(settings, SQLiteStore(settings.session_db), model,
                                  ltm=local_ltm(settings.ltm_db))
    agent.set_assistant(assistant)
    yield assistant
    agent.set_assistant(None)
    assistant.close()


@pytest.fixture
def http(ltm_assistant: LongTermAssistant) -> Iterator[TestClient]:
    with TestClient(agent.app) as c:
        yield c


def say(http: TestClient, actor: str, session: str, message: str) -> dict:
    response = invoke(http, {"message": message, "actor_id": actor}, session)
    assert response.status_code == 200, response.text
    return response.json()


def search(http: TestClient, actor: str, query: str, **extra: object) -> list[dict]:
    response = invoke(http, {"action": "search_memory", "query": query, "actor_id": actor, **extra}, "any")
    assert response.status_code == 200, response.text
    return response.json()["memories"]


def test_a_fact_told_in_one_session_is_recalled_in_the_next(http: TestClient, ltm_assistant: LongTermAssistant,
                                                             model: ScriptedModel) -> None:
    say(http, "alice", "s1", "Hello, I am Alice")
    say(http, "alice", "s1", FACT)
    say(http, "alice", "s1", "What is the weather like in Bergen?")
    ltm_assistant.ltm.flush()
    memories = search(http, "alice", "daughter cello")
    assert FACT in memories[0]["text"]  # the user's message, or the echo model's reply that repeats it
    assert memories[0]["session_id"] == "s1" and memories[0]["turn"] == 2
    assert set(memories[0]) >= {"text", "session_id", "score", "created_at"}
    answer = say(http, "alice", "s2", "What instrument does my daughter play?")
    assert answer["memories_used"] >= 1
    assert answer["history_length"] == 0  # a new session: the fact came from long-term memory
    assert FACT in model.system_prompts[-1]
    assert search(http, "bob", "daughter cello") == []
    assert say(http, "bob", "b1", "What instrument does my daughter play?")["memories_used"] == 0


def test_forget_removes_every_record_of_the_caller_only(http: TestClient, ltm_assistant: LongTermAssistant) -> None:
    say(http, "alice", "s1", FACT)
    say(http, "alice", "s2", "I collect stamps from Norway")
    say(http, "bob", "b1", "I collect stamps from Chile")
    ltm_assistant.ltm.flush()
    response = invoke(http, {"action": "forget", "actor_id": "alice"}, "s1")
    assert response.status_code == 200
    assert response.json() == {"action": "forget", "deleted": 4, "actor_id": "alice"}
    assert search(http, "alice", "stamps daughter") == []
    assert [m["text"] for m in search(http, "bob", "stamps")][:1] == ["I collect stamps from Chile"]


def test_clear_session_also_removes_that_sessions_records(http: TestClient, ltm_assistant: LongTermAssistant) -> None:
    say(http, "alice", "s1", FACT)
    say(http, "alice", "s2", "I collect stamps from Norway")
    ltm_assistant.ltm.flush()
    cleared = invoke(http, {"action": "clear_session", "actor_id": "alice"}, "s1").json()
    assert cleared["deleted"] == 1 and cleared["deleted_memories"] == 2
    assert {m["session_id"] for m in search(http, "alice", "daughter cello stamps")} == {"s2"}


def test_records_survive_a_restart(tmp_path: Path, model: ScriptedModel) -> None:
    settings = replace(Settings.from_env({}), session_db=tmp_path / "sessions.db", model_provider="echo")
    for round_ in range(2):
        assistant = LongTermAssistant(settings, SQLiteStore(settings.session_db), model, ltm=local_ltm(settings.ltm_db))
        agent.set_assistant(assistant)
        try:
            with TestClient(agent.app) as http:
                if round_ == 0:
                    say(http, "alice", "s1", FACT)  # no flush: closing the assistant drains the writer
                else:
                    assert FACT in search(http, "alice", "cello")[0]["text"]
        finally:
            agent.set_assistant(None)
            assistant.close()


@pytest.mark.parametrize("body, says", [
    ({"action": "search_memory"}, "needs a 'query'"),
    ({"action": "search_memory", "query": "   "}, "must not be empty"),
    ({"action": "search_memory", "query": 42}, "must be a string"),
    ({"action": "search_memory", "query": "x" * 2001}, "the limit is 2000"),
    ({"action": "search_memory", "query": "cello", "top_k": 0}, "between 1 and 50"),
    ({"action": "search_memory", "query": "cello", "top_k": "5"}, "must be an integer"),
    ({"action": "search_memory", "query": "cello", "top_k": True}, "must be an integer"),
    ({"action": "search_memory", "query": "cello", "top_k": 51}, "between 1 and 50"),
])
def test_bad_search_input_is_a_400_saying_what_is_wrong(http: TestClient, body: dict, says: str) -> None:
    response = invoke(http, body, "s1", **{ACTOR_HEADER: "alice"})
    assert response.status_code == 400
    assert says in response.json()["error"]
