"""What reaches the handler, and what is refused before: body size and shape, text, ids, duplicate headers.

Each refusal is a JSON 4xx naming the problem, logged once, with nothing stored and the model
not called: a body over ``MAX_BODY_BYTES`` (413, before it is read whole), JSON nested thousands
of levels deep or an integer of thousands of digits (400, not a plain-text 500), a lone
surrogate in the text (400, in every backend and when streamed), an identity header sent twice
with different values (400). Ids the client sends are escaped in the log.
"""

from __future__ import annotations

import http.client
import json
import logging
import select
import socket
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from service import Assistant
from tests.conftest import ACTOR_HEADER, REQUEST_PATH_BACKENDS, SESSION_HEADER, STORE_FACTORIES, store_factory_over
from tests.helpers.http_load import LogDrain
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.server import Server
from tests.test_identity import bearer
from tests.test_streaming import sse_events

#: the request path alone: the same code whatever the store (the contract suite covers every
#: backend); the lone-surrogate test, about what reaches a store, runs on every backend
store_factory = store_factory_over(REQUEST_PATH_BACKENDS)

REQUEST_ID_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "service.logs" and r.getMessage().startswith("request_id=<")]


def stored(assistant: Assistant, session: str = "conv") -> list[str]:
    return [m.text for e in assistant.store.list_events("default_user", session) for m in e.messages]


# -- body shape: the runtime's parser must never see what it would crash on ------------------------

@pytest.mark.parametrize(("body", "needle"), [
    (b"[" * 5000 + b"]" * 5000, "nests JSON too deeply"),
    (b'{"message": "hi", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nests JSON too deeply"),
    (b'{"message": "hi", "n": ' + b"7" * 5000 + b"}", "more than 4300 digits"),
    (b'{"message": ' + b"9" * 5000 + b"}", "more than 4300 digits"),
], ids=["nested 5000", "nested inside", "5000-digit integer", "5000-digit message"])
def test_a_body_a_json_parser_would_crash_on_is_a_400_naming_the_problem(
        client: TestClient, assistant: Assistant, model: ScriptedModel, caplog: pytest.LogCaptureFixture,
        body: bytes, needle: str) -> None:
    with caplog.at_level(logging.INFO):
        response = client.post("/invocations", content=body, headers={SESSION_HEADER: "conv"})
    assert response.status_code == 400
    assert needle in response.json()["error"]
    assert model.calls == [] and stored(assistant) == []
    [line] = request_lines(caplog)
    assert line.fields["status"] == 400 and not line.exc_info
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback anywhere


def test_a_deeply_nested_body_on_the_real_server_is_a_json_400_and_no_traceback(tmp_path: Path) -> None:
    server = Server({"SESSION_DB": str(tmp_path / "s.db")}).start()
    log = LogDrain(server)
    try:
        status, body = server.invoke(b'{"message": ' + b"[" * 5000 + b"]" * 5000 + b"}", "conv")
        assert status == 400 and "nests JSON too deeply" in body["error"]
        status, body = server.invoke(b'{"message": "hi", "n": ' + b"1" * 5000 + b"}", "conv")
        assert status == 400 and "4300 digits" in body["error"]
        assert server.invoke({"message": "still fine"}, "conv")[0] == 200
    finally:
        server.stop()
    text = "\n".join(log.wait_closed())
    assert "Traceback" not in text and "RecursionError" not in text


# -- text that is not text ------------------------------------------------------------------------

LONE_SURROGATE = b'"\\ud800"'


@pytest.mark.parametrize("store_factory", list(STORE_FACTORIES), indirect=True)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_lone_surrogate_in_the_message_is_a_400_before_anything_is_stored_on_every_backend(
        client: TestClient, assistant: Assistant, model: ScriptedModel, stream: bool) -> None:
    """The store never sees it (SQLite and Redis failed with a 502 blaming the model, the memory store
    kept the turn and every later summary failed), nor the model; streamed, it is a plain JSON 400."""
    assert client.post("/invocations", json={"message": "before"}, headers={SESSION_HEADER: "conv"}).status_code == 200
    body = b'{"message": "a' + LONE_SURROGATE[1:-1] + b'b", "stream": ' + (b"true" if stream else b"false") + b"}"
    response = client.post("/invocations", content=body, headers={SESSION_HEADER: "conv"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert "lone surrogate" in response.json()["error"] and "'message'" in response.json()["error"]
    assert len(model.calls) == 1 and stored(assistant) == ["before", "You said 'before'"]
    model.steps.append("a summary")
    summary = client.post("/invocations", json={"action": "summarize_session"}, headers={SESSION_HEADER: "conv"})
    assert summary.status_code == 200 and summary.json()["summary"] == "a summary"


@pytest.mark.parametrize("body", [
    b'{"prompt": ' + LONE_SURROGATE + b"}",
    b'{"message": "hi", "actor_id": ' + LONE_SURROGATE + b"}",
    b'{"message": "hi", "session_id": ' + LONE_SURROGATE + b"}",
    b'{"action": ' + LONE_SURROGATE + b"}",
], ids=["prompt", "actor_id", "session_id", "action"])
def test_a_lone_surrogate_in_any_field_is_a_400(client: TestClient, model: ScriptedModel, body: bytes) -> None:
    response = client.post("/invocations", content=body, headers={SESSION_HEADER: "conv"})
    assert response.status_code == 400 and response.json()["error"]
    assert model.calls == []


def test_every_streamed_error_event_carries_its_status(client: TestClient, assistant: Assistant,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in a streamed turn ends the stream with the status a plain request gets (500), not a bare error."""
    def broken(*args: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(assistant.pipeline, "build_agent", broken)
    plain = client.post("/invocations", json={"message": "hi"}, headers={SESSION_HEADER: "conv"})
    assert plain.status_code == 500
    with client.stream("POST", "/invocations", json={"message": "hi", "stream": True},
                       headers={SESSION_HEADER: "conv"}) as response:
        events = sse_events(response.read().decode())
    [event] = events
    assert event["status"] == 500 and event["error"].startswith("internal error (request id ")


# -- body size ----------------------------------------------------------------------------------

def test_the_default_body_limit_takes_the_longest_message_in_its_costliest_json(
        client: TestClient, assistant: Assistant) -> None:
    """MAX_MESSAGE_CHARS emoji, each escaped as a surrogate pair (12 bytes: what json.dumps sends)."""
    message = "\U0001F600" * assistant.settings.max_message_chars
    body = json.dumps({"message": message}).encode()
    assert len(body) > 12 * assistant.settings.max_message_chars
    assert client.post("/invocations", content=body, headers={SESSION_HEADER: "conv"}).status_code == 200
    too_long = client.post("/invocations", content=body + b" " * assistant.settings.body_limit,
                           headers={SESSION_HEADER: "conv"})
    assert too_long.status_code == 413 and "MAX_BODY_BYTES" in too_long.json()["error"]


def read_response(sock: socket.socket) -> tuple[int, dict]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read())


@pytest.fixture
def small_body_server(tmp_path: Path):
    server = Server({"SESSION_DB": str(tmp_path / "s.db"), "MAX_BODY_BYTES": "10000"}).start()
    LogDrain(server)
    yield server
    server.stop()


def test_a_declared_body_over_max_body_bytes_is_a_413_before_any_of_it_is_sent(small_body_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", small_body_server.port), timeout=30) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50000000\r\n\r\n")  # 50 MB announced, not one byte of it sent
        status, body = read_response(sock)
    assert status == 413 and body["error"] == (
        "the request body is 50000000 bytes; the limit is 10000 (MAX_BODY_BYTES)")


def test_a_chunked_body_is_refused_with_a_413_as_soon_as_it_passes_the_limit(small_body_server: Server) -> None:
    """The refusal arrives while the client still has most of its 1 MB to send: never buffered whole."""
    with socket.create_connection(("127.0.0.1", small_body_server.port), timeout=30) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b'{"message": "' + b"x" * 4000
        sent, answered = 0, False
        while sent < 1_000_000 and not answered:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:  # the server answered and closed: the rest is not wanted
                break
            sent += len(chunk)
            chunk = b"x" * 4000
            answered = bool(select.select([sock], [], [], 0.05)[0])
        assert sent < 1_000_000, "the server read the whole body instead of refusing it"
        status, body = read_response(sock)
    assert status == 413 and "MAX_BODY_BYTES" in body["error"]
    assert small_body_server.invoke({"message": "next"}, "conv")[0] == 200


# -- identity headers and the log line ----------------------------------------------------------

@pytest.mark.parametrize("name", [SESSION_HEADER, ACTOR_HEADER, "Authorization"])
def test_an_identity_header_sent_twice_with_different_values_is_a_400(
        client: TestClient, assistant: Assistant, model: ScriptedModel, name: str) -> None:
    values = [bearer("alice")["Authorization"], bearer("bob")["Authorization"]] if name == "Authorization" else [
        "alice", "bob"]
    headers = [(name, values[0]), (name, values[1])]
    if name != SESSION_HEADER:
        headers.append((SESSION_HEADER, "conv"))
    response = client.post("/invocations", json={"message": "hi"}, headers=headers)
    assert response.status_code == 400 and "sent 2 times with different values" in response.json()["error"]
    assert model.calls == []
    same = client.post("/invocations", json={"message": "hi"}, headers=[(name, values[0]), (name, values[0])]
                       + ([] if name == SESSION_HEADER else [(SESSION_HEADER, "conv")]))
    assert same.status_code == 200


def test_ids_from_the_client_cannot_forge_fields_in_the_log_line(
        client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    forged = "abc> | actor_id=<victim"
    with caplog.at_level(logging.INFO):
        ok = client.post("/invocations", json={"message": "hi"},
                         headers={SESSION_HEADER: "conv", REQUEST_ID_HEADER: forged})
        bad = client.post("/invocations", json={"message": "hi"},
                          headers={SESSION_HEADER: "x> | actor_id=<victim> | status=<200", REQUEST_ID_HEADER: "r2"})
    assert ok.status_code == 200 and bad.status_code == 400
    lines = [r.getMessage() for r in request_lines(caplog)]
    assert len(lines) == 2
    for line in lines:
        assert "actor_id=<victim" not in line and line.count("actor_id=<") == 1 and line.count("status=<") == 1
    assert lines[0].startswith("request_id=<abc%3E%20%7C%20actor_id%3D%3Cvictim>")


def test_session_id_in_the_body_is_honoured_like_actor_id(client: TestClient) -> None:
    answer = client.post("/invocations", json={"message": "hi", "session_id": "abc"})
    assert (answer.status_code, answer.json()["session_id"], answer.json()["message_count"]) == (200, "abc", 1)
    same = client.post("/invocations", json={"message": "again", "session_id": "abc"}, headers={SESSION_HEADER: "abc"})
    assert (same.json()["session_id"], same.json()["message_count"]) == ("abc", 2)
    differ = client.post("/invocations", json={"message": "hi", "session_id": "abc"}, headers={SESSION_HEADER: "xyz"})
    assert differ.status_code == 400 and "differ" in differ.json()["error"]
    invalid = client.post("/invocations", json={"message": "hi", "session_id": "a:b"})
    assert invalid.status_code == 400 and "session_id" in invalid.json()["error"]
    for body in ({"action": "clear_session", "session_id": "abc"},):
        assert client.post("/invocations", json=body).json() == {
            "action": "clear_session", "deleted": 2, "session_id": "abc", "actor_id": "default_user"}
