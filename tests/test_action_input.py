"""Hostile input to every payload action over HTTP: a 400 JSON error naming the field, never a 500, nothing changed.

Each action's parser (its entry in ``service.actions.ACTIONS``) gets a lone surrogate, a huge or
negative integer, a number where text belongs, text where a number belongs, and an array or
object nested where a scalar belongs. The server has long-term memory (so ``search_memory`` and
``forget`` parse their fields rather than answer that it is off); a seeded session and the
actor's records must be exactly as before, and the model never called.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import agent
from service import Assistant
from service.actions import ACTIONS
from tests.conftest import SESSION_HEADER
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.longterm_http import ltm_settings, replica

LONE_SURROGATE = '"\\ud800"'  # JSON text that parses to a str holding a lone surrogate
HUGE = "9" * 4_000  # parses (Python's limit is 4,300 digits); str() of it is 4,000 characters
NESTED = "[" * 20 + "1" + "]" * 20  # within the request guard's nesting limit: the action's parser sees it
DEEP = "[" * 200 + "1" + "]" * 200  # past it: the guard refuses the body before any parser

#: (action, a field of it, the JSON text of the field's value, what the error must say)
CASES: list[tuple[str, str, str, str]] = [
    ("search_memory", "query", LONE_SURROGATE, "'query' holds a lone surrogate"),
    ("search_memory", "query", json.dumps("cello \ud800 lessons", ensure_ascii=True), "'query' holds a lone surrogate"),
    ("search_memory", "query", "42", "'query' must be a string"),
    ("search_memory", "query", NESTED, "'query' must be a string"),
    ("search_memory", "query", '{"$ne": ""}', "'query' must be a string"),
    ("search_memory", "query", DEEP, "nests JSON too deeply"),
    ("search_memory", "top_k", HUGE, "'top_k' must be an integer between 1 and 50, got a huge integer"),
    ("search_memory", "top_k", "-" + HUGE, "'top_k' must be an integer between 1 and 50, got a huge negative"),
    ("search_memory", "top_k", "5.0", "'top_k' must be an integer"),
    ("search_memory", "top_k", "1e400", "'top_k' must be an integer"),
    ("search_memory", "top_k", NESTED, "'top_k' must be an integer"),
    ("search_memory", "top_k", LONE_SURROGATE, "'top_k' must be an integer"),
    ("list_sessions", "limit", HUGE, "'limit' must be an integer from 1 to 100, got a huge integer"),
    ("list_sessions", "limit", "-1", "'limit' must be an integer from 1 to 100, got -1"),
    ("list_sessions", "limit", '"20"', "'limit' must be an integer"),
    ("list_sessions", "limit", NESTED, "'limit' must be an integer"),
    ("list_sessions", "cursor", LONE_SURROGATE, "'cursor' holds a lone surrogate"),
    ("list_sessions", "cursor", "12", "'cursor' must be a string"),
    ("list_sessions", "cursor", NESTED, "'cursor' must be a string"),
    ("get_history", "before", HUGE, "'before' must be a positive integer (a turn number) or null, got a huge"),
    ("get_history", "before", "0", "'before' must be a positive integer"),
    ("get_history", "before", "true", "'before' must be a positive integer"),
    ("get_history", "before", NESTED, "'before' must be a positive integer"),
    ("get_history", "limit", "201", "'limit' must be an integer from 1 to 200, got 201"),
    ("get_history", "limit", '{"a": {"b": {"c": 1}}}', "'limit' must be an integer"),
    ("get_history", "action", NESTED, "unknown action list"),
    ("clear_session", "action", '{"name": "clear_session"}', "unknown action dict"),
    ("forget", "stream", '"yes"', "'stream' must be true or false"),
    ("summarize_session", "actor_id", NESTED, "actor_id must be a string, got list"),
    ("delete_memory", "record_id", LONE_SURROGATE, "'record_id' holds a lone surrogate"),
    ("delete_memory", "record_id", HUGE, "'record_id' must be a string, got int"),
    ("delete_memory", "record_id", json.dumps("x" * 50_000), "'record_id' is 50000 characters long"),
    ("delete_memory", "record_id", NESTED, "'record_id' must be a string, got list"),
    ("delete_memory", "record_id", '{"$ne": ""}', "'record_id' must be a string, got dict"),
    ("delete_memory", "record_id", "null", "delete_memory needs a 'record_id' string"),
    ("list_memories", "limit", HUGE, "'limit' must be an integer from 1 to 100, got a huge integer"),
    ("list_memories", "cursor", LONE_SURROGATE, "'cursor' holds a lone surrogate"),
    ("list_memories", "cursor", NESTED, "'cursor' must be a string"),
    ("export", "limit", "-" + HUGE, "'limit' must be an integer from 1 to 100, got a huge negative"),
    ("export", "limit", NESTED, "'limit' must be an integer"),
    ("export", "cursor", LONE_SURROGATE, "'cursor' holds a lone surrogate"),
    ("export", "cursor", '{"a": ["s:"]}', "'cursor' must be a string"),
    ("export", "cursor", '"m:' + "9" * 5_000 + '"', "'cursor' is not a cursor this server issued"),
    ("erase", "actor_id", LONE_SURROGATE, "actor_id"),
    ("erase", "actor_id", NESTED, "actor_id must be a string, got list"),
]


@pytest.fixture
def server(tmp_path: Path, model: ScriptedModel) -> Iterator[tuple[TestClient, Assistant]]:
    assistant = replica(ltm_settings(tmp_path), model)
    agent.set_assistant(assistant)
    try:
        with TestClient(agent.app) as client:
            yield client, assistant
    finally:
        agent.set_assistant(None)
        assistant.close()


def state_of(assistant: Assistant) -> tuple[Any, ...]:
    assert assistant.ltm is not None
    return (assistant.store.list_events("default_user", "s1"),
            [m.text for m in assistant.ltm.search("default_user", "cello", 50)])


def test_every_action_of_the_table_is_covered() -> None:
    assert {case[0] for case in CASES} == set(ACTIONS)
    assert {"search_memory", "list_sessions", "get_history", "delete_memory", "list_memories", "export"} <= \
        {case[0] for case in CASES if case[1] != "action"}


@pytest.mark.parametrize(("action", "field", "value", "says"), CASES,
                         ids=[f"{a}-{f}-{i}" for i, (a, f, _, _) in enumerate(CASES)])
def test_hostile_action_input_is_a_400_naming_the_field(server: tuple[TestClient, Assistant], model: ScriptedModel,
                                                        action: str, field: str, value: str, says: str) -> None:
    client, assistant = server
    seeded = client.post("/invocations", json={"message": "I play the cello"}, headers={SESSION_HEADER: "s1"})
    assert seeded.status_code == 200
    assert assistant.ltm is not None
    assistant.ltm.flush()
    before, calls = state_of(assistant), len(model.calls)

    fields = {"action": json.dumps(action), "query": '"cello"', field: value}
    body = "{" + ", ".join(f'"{name}": {text}' for name, text in fields.items()) + "}"
    response = client.post("/invocations", content=body.encode(),
                           headers={SESSION_HEADER: "s1", "Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert says in response.json()["error"]
    assert len(response.json()["error"]) < 400  # the value is named, never echoed whole
    assert len(model.calls) == calls
    assert state_of(assistant) == before
