"""Identity: a bearer JWT's ``sub`` is the actor; a disagreeing payload or header actor is refused."""

from __future__ import annotations

import jwt
from starlette.testclient import TestClient

from tests.conftest import ACTOR_HEADER, SESSION_HEADER


def bearer(sub: object = "alice", **claims: object) -> dict[str, str]:
    token = jwt.encode({"sub": sub, **claims} if sub is not None else claims, "a-signing-key-the-runtime-checked-not-us-32b", algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def invoke(client: TestClient, body: dict, session: str = "s1", **headers: str):
    return client.post("/invocations", json=body, headers={SESSION_HEADER: session, **headers})


def test_token_subject_is_the_actor(client: TestClient) -> None:
    response = invoke(client, {"message": "hi"}, **bearer("alice"))
    assert response.status_code == 200
    assert response.json()["actor_id"] == "alice"


def test_matching_payload_or_header_actor_is_accepted(client: TestClient) -> None:
    assert invoke(client, {"message": "hi", "actor_id": "alice"}, **bearer("alice")).json()["message_count"] == 1
    assert invoke(client, {"message": "hi"}, **{ACTOR_HEADER: "alice"}, **bearer("alice")).json()["message_count"] == 2


def test_disagreeing_actor_is_refused_and_nothing_is_read_or_written(client: TestClient, assistant) -> None:
    invoke(client, {"message": "bob's secret", "actor_id": "bob"})  # dev-mode write as bob
    for body, headers in [({"message": "hi", "actor_id": "bob"}, {}), ({"message": "hi"}, {ACTOR_HEADER: "bob"})]:
        response = invoke(client, body, **headers, **bearer("mallory"))
        assert response.status_code == 403
        assert "actor" in response.json()["error"]
    assert len(assistant.store.list_events("bob", "s1")) == 1
    assert assistant.store.list_events("mallory", "s1") == []


def test_unreadable_token_is_a_401(client: TestClient) -> None:
    response = invoke(client, {"message": "hi"}, Authorization="Bearer not-a-jwt")
    assert response.status_code == 401
    assert "JWT" in response.json()["error"]
    assert invoke(client, {"message": "hi"}, **bearer(None, scope="x")).status_code == 401


def test_token_subject_that_is_not_a_valid_id_is_refused(client: TestClient) -> None:
    response = invoke(client, {"message": "hi"}, **bearer("auth0|123"))
    assert response.status_code == 403
    assert "sub" in response.json()["error"]


def test_non_bearer_authorization_is_not_an_identity(client: TestClient) -> None:
    response = invoke(client, {"message": "hi"}, Authorization="AWS4-HMAC-SHA256 Credential=x")
    assert response.status_code == 200
    assert response.json()["actor_id"] == "default_user"


def test_a_body_actor_and_a_header_actor_that_differ_are_a_400_and_nothing_is_stored(client: TestClient,
                                                                                      assistant) -> None:
    response = invoke(client, {"message": "hi", "actor_id": "alice"}, **{ACTOR_HEADER: "bob"})
    assert response.status_code == 400
    assert "actor" in response.json()["error"]
    assert assistant.store.list_events("alice", "s1") == [] and assistant.store.list_events("bob", "s1") == []
    same = invoke(client, {"message": "hi", "actor_id": "bob"}, **{ACTOR_HEADER: "bob"})
    assert (same.status_code, same.json()["actor_id"]) == (200, "bob")
