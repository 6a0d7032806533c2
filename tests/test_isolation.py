"""No request reads, summarises or clears another actor's conversation, end to end over HTTP, on every backend.

The pairs are the same session id under two actors, and (actor, session) pairs built to meet in a
naive ``f"{actor}{sep}{session}"`` key. Ids with ``:`` or ``/`` (``("a:b", "c")`` vs ``("a", "b:c")``)
are refused at the HTTP layer by the id pattern (``tests/test_bad_input.py``), and every store keeps
even those apart (``tests/test_store_contract.py::test_keys_do_not_collide``); what the pattern allows
is tried here. Forged ids in tool calls: ``tests/test_session_tools.py`` (every backend, hook level),
``tests/test_session_http.py`` and ``tests/test_session_bedrock.py`` (through Bedrock's Converse API).
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from service import Assistant
from tests.conftest import ACTOR_HEADER, SESSION_HEADER
from tests.helpers.scripted_model import ScriptedModel
from tests.test_identity import bearer

SECRET = "my pin is 4711"

PAIRS = [
    (("alice", "shared"), ("bob", "shared")),
    (("a-b", "c"), ("a", "b-c")),
    (("a_b", "c"), ("a", "b_c")),
    (("ab", "c"), ("a", "bc")),
    (("1", "23"), ("12", "3")),
]


def post(client: TestClient, ids: tuple[str, str], body: dict, **headers: str) -> dict:
    actor, session = ids
    response = client.post("/invocations", json=body, headers={SESSION_HEADER: session, ACTOR_HEADER: actor, **headers})
    assert response.status_code == 200, response.text
    return response.json()


def texts(assistant: Assistant, ids: tuple[str, str]) -> list[str]:
    return [m.text for e in assistant.store.list_events(*ids) for m in e.messages]


@pytest.mark.parametrize(("owner", "other"), PAIRS, ids=[f"{a}|{b}" for a, b in PAIRS])
def test_another_actor_or_a_colliding_id_cannot_read_summarise_or_clear_a_session(
    client: TestClient, assistant: Assistant, model: ScriptedModel, owner: tuple[str, str], other: tuple[str, str]
) -> None:
    post(client, owner, {"message": SECRET})
    post(client, owner, {"message": "and my name is Ana"})

    chat = post(client, other, {"message": "what is my pin?"})
    assert (chat["actor_id"], chat["session_id"]) == other
    assert (chat["message_count"], chat["history_length"]) == (1, 0)
    assert model.seen_texts() == [("user", "what is my pin?")]  # read: nothing of the owner's

    summary = post(client, other, {"action": "summarize_session"})
    assert SECRET not in summary["summary"] and "what is my pin?" in summary["summary"]

    cleared = post(client, other, {"action": "clear_session"})
    assert cleared["deleted"] == 1  # its own one turn, nothing of the owner's
    assert texts(assistant, owner) == [SECRET, f"You said '{SECRET}'", "and my name is Ana",
                                       "You said 'and my name is Ana'"]
    assert post(client, owner, {"message": "still mine?"})["message_count"] == 3


def test_with_a_token_actions_reach_only_the_token_subjects_session(client: TestClient, assistant: Assistant) -> None:
    post(client, ("alice", "shared"), {"message": SECRET})
    post(client, ("mallory", "shared"), {"message": "mallory's own"})
    response = client.post("/invocations", json={"action": "clear_session"},
                           headers={SESSION_HEADER: "shared", **bearer("mallory")})
    assert response.status_code == 200
    assert (response.json()["actor_id"], response.json()["deleted"]) == ("mallory", 1)
    summary = client.post("/invocations", json={"action": "summarize_session"},
                          headers={SESSION_HEADER: "shared", **bearer("mallory")}).json()
    assert SECRET not in summary["summary"]
    assert texts(assistant, ("alice", "shared")) == [SECRET, f"You said '{SECRET}'"]
