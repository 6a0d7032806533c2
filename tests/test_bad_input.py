"""Bad input over HTTP (``POST /invocations`` through Starlette's TestClient), table-driven.

Each case asserts the status, the JSON error saying what is wrong, that the model was not called and
that no session changed: neither the ones that already hold turns nor the ones a naive parser could
have fallen back to (``default``, the pieces of an ``a:b`` id).

Over a real socket some of these cannot even be sent: uvicorn's HTTP parser refuses a header with a
NUL byte with its own plain-text 400 before the application sees it. The handler-level cases at the
end cover what no HTTP client delivers intact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from bedrock_agentcore.runtime.context import RequestContext
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from agent import chat_handler
from service import Assistant
from tests.conftest import ACTOR_HEADER, SESSION_HEADER, STORE_FACTORIES, StoreFactory
from tests.helpers.scripted_model import ScriptedModel
from tests.test_identity import bearer

#: sessions that hold turns before every case, and sessions a bad request must not create
WATCHED = [("default_user", "ok"), ("alice", "ok"), ("bob", "ok"), ("a", "b"), ("default_user", "a"),
           ("default_user", "default"), ("alice", "default"), ("default_user", "b")]
SEEDED = WATCHED[:3]

TEN_KB = "x" * 10_240
OK = "ok"

# (name, body: JSON value or raw bytes, session header (None: absent), other headers, status, error contains)
CASES: list[tuple[str, Any, str | bytes | None, dict[str, str], int, str]] = [
    ("body not JSON", b"{not json", OK, {}, 400, "Invalid JSON"),
    ("body empty", b"", OK, {}, 400, "Invalid JSON"),
    ("body not UTF-8", b'{"message": "\xff\xfe"}', OK, {}, 400, "Invalid encoding"),
    ("JSON array", [1, 2], OK, {}, 400, "must be a JSON object, got list"),
    ("JSON string", "Hello", OK, {}, 400, "must be a JSON object, got str"),
    ("JSON number", 42, OK, {}, 400, "must be a JSON object, got int"),
    ("JSON null", None, OK, {}, 400, "must be a JSON object, got NoneType"),
    ("message missing", {}, OK, {}, 400, "'message' is required"),
    ("message null", {"message": None}, OK, {}, 400, "'message' is required"),
    ("message empty", {"message": ""}, OK, {}, 400, "'message' must not be empty"),
    ("message blank", {"message": " \n\t "}, OK, {}, 400, "'message' must not be empty"),
    ("message a number", {"message": 42}, OK, {}, 400, "'message' must be a string, got int"),
    ("message a list", {"message": ["hi"]}, OK, {}, 400, "'message' must be a string, got list"),
    ("message an object", {"message": {"text": "hi"}}, OK, {}, 400, "'message' must be a string, got dict"),
    ("message too long", {"message": "x" * 32_001}, OK, {}, 400,
     "'message' is 32001 characters long; the limit is 32000 (MAX_MESSAGE_CHARS)"),
    ("message and prompt differ", {"message": "a", "prompt": "b"}, OK, {}, 400, "'message' and 'prompt'"),
    ("unknown action", {"action": "rename_session"}, OK, {}, 400, "unknown action 'rename_session'"),
    ("action empty", {"action": ""}, OK, {}, 400, "unknown action ''"),
    ("action a number", {"action": 1}, OK, {}, 400, "unknown action 1"),
    ("stream a string", {"message": "hi", "stream": "yes"}, OK, {}, 400, "'stream' must be true or false, got str"),
    ("stream a number", {"message": "hi", "stream": 1}, OK, {}, 400, "'stream' must be true or false, got int"),
    ("stream null", {"message": "hi", "stream": None}, OK, {}, 400, "'stream' must be true or false, got NoneType"),
    ("session a:b", {"message": "hi"}, "a:b", {}, 400, "session id may contain only"),
    ("session ../", {"message": "hi"}, "../ok", {}, 400, "session id may contain only"),
    ("session with a slash", {"message": "hi"}, "ok/../ok", {}, 400, "session id may contain only"),
    ("session leading _", {"message": "hi"}, "_ok", {}, 400, "session id may contain only"),
    ("session with spaces", {"message": "hi"}, " ok ", {}, 400, "session id may contain only"),
    ("session NUL byte", {"message": "hi"}, "ok\x00", {}, 400, "session id may contain only"),
    ("session unicode (UTF-8 bytes)", {"message": "hi"}, "sëssion-ünï".encode(), {}, 400, "session id may contain only"),
    ("session 101 chars", {"message": "hi"}, "s" * 101, {}, 400, "session id is 101 characters long; the limit is 100"),
    ("session 10 KB", {"message": "hi"}, TEN_KB, {}, 400, "session id is 10240 characters long"),
    ("actor a:b", {"message": "hi", "actor_id": "a:b"}, OK, {}, 400, "actor_id may contain only"),
    ("actor ../", {"message": "hi", "actor_id": "../alice"}, OK, {}, 400, "actor_id may contain only"),
    ("actor empty", {"message": "hi", "actor_id": ""}, OK, {}, 400, "actor_id must not be empty"),
    ("actor a number", {"message": "hi", "actor_id": 7}, OK, {}, 400, "actor_id must be a string, got int"),
    ("actor a list", {"message": "hi", "actor_id": ["alice"]}, OK, {}, 400, "actor_id must be a string, got list"),
    ("actor NUL byte", {"message": "hi", "actor_id": "alice\x00"}, OK, {}, 400, "actor_id may contain only"),
    ("actor unicode", {"message": "hi", "actor_id": "ålice"}, OK, {}, 400, "actor_id may contain only"),
    ("actor 256 chars", {"message": "hi", "actor_id": "a" * 256}, OK, {}, 400,
     "actor_id is 256 characters long; the limit is 255"),
    ("actor 10 KB", {"message": "hi", "actor_id": TEN_KB}, OK, {}, 400, "actor_id is 10240 characters long"),
    ("actor on an action", {"action": "clear_session", "actor_id": "a:b"}, OK, {}, 400, "actor_id may contain only"),
    ("actor header a:b", {"message": "hi"}, OK, {ACTOR_HEADER: "a:b"}, 400, "actor id header may contain only"),
    ("actor header 10 KB", {"message": "hi"}, OK, {ACTOR_HEADER: TEN_KB}, 400, "actor id header is 10240"),
    ("actor header NUL byte", {"message": "hi"}, OK, {ACTOR_HEADER: "bob\x00"}, 400, "actor id header may contain"),
    ("bearer not a JWT", {"message": "hi"}, OK, {"Authorization": "Bearer not-a-jwt"}, 401, "not a readable JWT"),
    ("bearer for someone else", {"message": "hi", "actor_id": "bob"}, OK, bearer("alice"), 403,
     "does not match the authenticated user"),
    ("clear as someone else", {"action": "clear_session", "actor_id": "bob"}, OK, bearer("alice"), 403,
     "does not match the authenticated user"),
]


@pytest.fixture(params=["sqlite", "agentcore"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Input is refused before any store is touched, so two backends show it: the default, and the
    one with ids rules of its own (AgentCore Memory's)."""
    factory = STORE_FACTORIES[request.param](request, tmp_path)
    yield factory
    factory.cleanup()


def snapshot(assistant: Assistant) -> dict[tuple[str, str], list]:
    return {ids: assistant.store.list_events(*ids) for ids in WATCHED}


@pytest.mark.parametrize(("body", "session", "headers", "status", "needle"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_a_4xx_json_error_and_no_session_changes(
    client: TestClient, assistant: Assistant, model: ScriptedModel,
    body: Any, session: str | bytes | None, headers: dict[str, str], status: int, needle: str,
) -> None:
    for actor, seeded in SEEDED:
        assistant.store.add_turns(actor, seeded, [ConversationalMessage(f"{actor}'s turn", MessageRole.USER),
                                                  ConversationalMessage("noted", MessageRole.ASSISTANT)])
    before, calls = snapshot(assistant), len(model.calls)

    all_headers: dict[str, str | bytes] = {"Content-Type": "application/json", **headers}
    if session is not None:
        all_headers[SESSION_HEADER] = session
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post("/invocations", content=content, headers=all_headers)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert needle in response.json()["error"]
    assert "Traceback" not in response.text
    assert len(model.calls) == calls  # the model was never asked
    assert snapshot(assistant) == before


def test_the_table_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("session_id", "needle"), [
    ("ok\x00", "session id may contain only"),
    ("\x00", "session id may contain only"),
    ("ünïcode", "session id may contain only"),
    ("a\nb", "session id may contain only"),
    ("s" * 10_240, "session id is 10240 characters long"),
])
def test_ids_no_http_client_delivers_intact_are_refused_at_the_handler(assistant: Assistant, session_id: str,
                                                                      needle: str) -> None:
    response = chat_handler({"message": "hi"}, RequestContext(session_id=session_id, request_headers=None))
    assert isinstance(response, JSONResponse) and response.status_code == 400
    assert needle in json.loads(response.body)["error"]
    assert all(assistant.store.list_events(*ids) == [] for ids in WATCHED)
