"""The AgentCore HTTP contract through Starlette's TestClient: POST /invocations, GET /ping."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.conftest import ACTOR_HEADER, SESSION_HEADER
from tests.helpers.scripted_model import ScriptedModel


def invoke(client: TestClient, body: object, session: str | None = None, **headers: str):
    if session is not None:
        headers[SESSION_HEADER] = session
    return client.post("/invocations", json=body, headers=headers)


def test_ping_is_healthy(client: TestClient) -> None:
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.json()["status"] == "Healthy"


def test_session_persistence_over_http(client: TestClient, model: ScriptedModel) -> None:
    first = invoke(client, {"message": "Hello"}, "conv1")
    second = invoke(client, {"message": "How are you?"}, "conv1")
    assert first.status_code == second.status_code == 200
    assert first.json()["message_count"] == 1
    assert second.json() == {
        "response": "You said 'How are you?'",
        "session_id": "conv1",
        "actor_id": "default_user",
        "message_count": 2,
        "history_length": 1,
    }
    assert ("assistant", "You said 'Hello'") in model.seen_texts()


def test_session_isolation_over_http(client: TestClient, model: ScriptedModel) -> None:
    invoke(client, {"message": "Hello"}, "conv1")
    other = invoke(client, {"message": "Hello"}, "conv2").json()
    assert other["message_count"] == 1 and other["history_length"] == 0
    assert model.seen_texts() == [("user", "Hello")]


def test_actor_header_separates_conversations(client: TestClient) -> None:
    invoke(client, {"message": "Hi"}, "shared", **{ACTOR_HEADER: "alice"})
    alice = invoke(client, {"message": "Hi"}, "shared", **{ACTOR_HEADER: "alice"}).json()
    bob = invoke(client, {"message": "Hi"}, "shared", **{ACTOR_HEADER: "bob"}).json()
    assert (alice["actor_id"], alice["message_count"]) == ("alice", 2)
    assert (bob["actor_id"], bob["message_count"]) == ("bob", 1)


def test_non_json_body_is_a_400(client: TestClient) -> None:
    response = client.post("/invocations", content=b"not json{", headers={SESSION_HEADER: "conv1"})
    assert response.status_code == 400
    assert "error" in response.json()


def test_bad_payload_and_bad_ids_are_json_400s(client: TestClient) -> None:
    for body, session in [([1], "ok"), ({"message": ""}, "ok"), ({"message": "hi"}, "a:b")]:
        response = invoke(client, body, session)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]
    assert invoke(client, {"message": "hi"}, "ok").json()["message_count"] == 1


def test_the_npm_cli_payload_prompt_with_a_lower_case_session_header(client: TestClient) -> None:
    """`agentcore dev -H "x-amzn-bedrock-agentcore-runtime-session-id: conv1" "Hello"` posts exactly this."""
    headers = {"x-amzn-bedrock-agentcore-runtime-session-id": "conv1"}
    first = client.post("/invocations", json={"prompt": "Hello"}, headers=headers)
    second = client.post("/invocations", json={"prompt": "Hello again"}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert (first.json()["session_id"], first.json()["message_count"]) == ("conv1", 1)
    assert second.json() == {"response": "You said 'Hello again'", "session_id": "conv1",
                             "actor_id": "default_user", "message_count": 2, "history_length": 1}
    clash = client.post("/invocations", json={"prompt": "a", "message": "b"}, headers=headers)
    assert clash.status_code == 400 and "'prompt'" in clash.json()["error"]
