"""The model fails mid-turn: the client gets a JSON error saying what failed (502, or 503 when trying
again later may work), nothing of the turn is stored, and the next request of the session works with
a history that alternates user / assistant and carries no ``toolUse`` without its result.

Scripted failures go through ``POST /invocations`` on every backend; Bedrock's own failures go
through the real ``BedrockModel`` client: throttling with botocore's Stubber, timeouts over real
HTTP on loopback (a server that never answers, and one that stalls mid-stream).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
import urllib3.exceptions
from botocore.config import Config
from botocore.stub import Stubber
from starlette.testclient import TestClient
from strands.models import BedrockModel
from strands.types.exceptions import ModelThrottledException
from strands.types.streaming import StreamEvent

import agent
from service import Assistant
from memory.base import SessionStore
from memory.sqlite import SQLiteStore
from models import text_stream
from tests.conftest import SESSION_HEADER, boto3_session
from tests.helpers.http_load import echo, questions_in_order
from tests.helpers.scripted_model import ScriptedModel


class StreamBreaksModel(ScriptedModel):
    """A scripted model whose step ``("partial", text, error)`` streams part of a reply, then fails;
    ``("cut", text)`` ends a reply at the token limit (stop reason ``max_tokens``)."""

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[StreamEvent]:
        step = self.steps[0] if self.steps else None
        if isinstance(step, tuple):
            self.steps.pop(0)
            self.calls.append([{"role": m["role"], "content": m["content"]} for m in messages])
            if step[0] == "cut":
                for event in text_stream(step[1], stop_reason="max_tokens"):
                    yield event
                return
            for event in text_stream(step[1])[:3]:  # messageStart, contentBlockStart, the first word
                yield event
            raise step[2]
        async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
            yield event


@pytest.fixture
def breaking_model(assistant: Assistant) -> StreamBreaksModel:
    model = StreamBreaksModel(echo=True)
    assistant.model = model
    assistant.summarizer.model = model
    return model


def post(client: TestClient, message: str, session: str = "conv") -> Any:
    return client.post("/invocations", json={"message": message}, headers={SESSION_HEADER: session})


def stored(store: SessionStore, session: str = "conv") -> list[str]:
    """The stored questions, after checking every stored turn is whole (USER, then its own answer)."""
    return questions_in_order(store.list_events("default_user", session))


def assert_history_is_clean(model: ScriptedModel, earlier: list[str], new: str) -> None:
    """The model's last call: the earlier turns as user/assistant pairs, then the new message; nothing else."""
    messages = model.last_messages
    assert [m["role"] for m in messages] == ["user", "assistant"] * len(earlier) + ["user"]
    assert all(set(block) == {"text"} for m in messages for block in m["content"]), "a toolUse/toolResult leaked"
    expected = [text for q in earlier for text in (q, echo(q))] + [new]
    assert [text for _, text in model.seen_texts()] == expected


FAILURES = {
    "exception": ([RuntimeError("model exploded")], 502, "model call failed: RuntimeError: model exploded"),
    "throttled": ([ModelThrottledException("slow down")], 503, "model call failed: throttled: "),
    "timeout": ([TimeoutError("no reply in time")], 503, "model call failed: timed out: TimeoutError"),
    "botocore read timeout": (
        [botocore.exceptions.ReadTimeoutError(endpoint_url="https://bedrock-runtime.example/model/m/converse")],
        503, "model call failed: timed out: ReadTimeoutError"),
    "urllib3 stall mid-stream": ([urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out.")], 503,
                                 "model call failed: timed out: ReadTimeoutError"),
    "breaks mid-reply": ([("partial", "half of a reply", RuntimeError("connection reset"))], 502,
                         "model call failed: RuntimeError: connection reset"),
    "toolUse, then fails": ([{"tool": "summarize_session"}, "a summary", RuntimeError("died after the tool")], 502,
                            "model call failed: RuntimeError: died after the tool"),
    "toolUse, then throttled": ([{"tool": "summarize_session"}, "a summary", ModelThrottledException("later")],
                                503, "model call failed: throttled: "),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_model_failing_mid_turn_is_a_json_error_and_the_session_carries_on(
    client: TestClient, assistant: Assistant, breaking_model: StreamBreaksModel, failure: str
) -> None:
    steps, status, error = FAILURES[failure]
    for message in ("first", "second"):
        assert post(client, message).status_code == 200
    before = assistant.store.list_events("default_user", "conv")

    breaking_model.steps.extend(steps)
    response = post(client, "this one fails")
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"].startswith(error)
    breaking_model.assert_script_done()
    assert assistant.store.list_events("default_user", "conv") == before  # no half turn, no toolUse
    assert assistant.store.get_summary("default_user", "conv") is None

    after = post(client, "and this one works")
    assert after.status_code == 200
    assert (after.json()["message_count"], after.json()["history_length"]) == (3, 2)
    assert_history_is_clean(breaking_model, ["first", "second"], "and this one works")
    assert stored(assistant.store) == ["first", "second", "and this one works"]


def test_a_reply_cut_at_max_tokens_leaves_a_valid_history_and_the_next_request_works(
    client: TestClient, assistant: Assistant, breaking_model: StreamBreaksModel
) -> None:
    """The cut reply is what the user got: answered (flagged ``truncated``) and stored as a whole turn,
    and the session carries on with a history of whole turns."""
    assert post(client, "first").status_code == 200
    breaking_model.steps.append(("cut", "a reply that runs out of"))
    response = post(client, "tell me everything")
    assert response.headers["content-type"].startswith("application/json")
    assert response.status_code == 200, response.text
    assert (response.json()["response"], response.json()["truncated"]) == ("a reply that runs out of", True)
    turns = assistant.store.list_events("default_user", "conv")
    assert [[m.text for m in t.messages] for t in turns] == [
        ["first", turns[0].messages[1].text], ["tell me everything", "a reply that runs out of"]]
    for turn in turns:  # whole turns only: each a question and a non-empty answer
        assert [m.role.value for m in turn.messages] == ["USER", "ASSISTANT"] and turn.messages[1].text
    after = post(client, "shorter please")
    assert after.status_code == 200
    assert after.json()["message_count"] == len(turns) + 1
    roles = [m["role"] for m in breaking_model.last_messages]
    assert roles == ["user", "assistant"] * len(turns) + ["user"]


# -- Bedrock, through the real client --------------------------------------------------------------

def converse_reply(text: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
        "metrics": {"latencyMs": 10},
    }


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SessionStore]:
    """The Bedrock tests are about the model's errors: one backend is enough (the default)."""
    store = SQLiteStore(tmp_path / "sessions.db")
    yield store
    store.close()


@pytest.fixture
def bedrock_client(settings, sqlite_store: SessionStore) -> Iterator[tuple[TestClient, Stubber, list[dict[str, Any]]]]:
    store = sqlite_store
    model = BedrockModel(model_id=settings.bedrock_model_id, boto_session=boto3_session(), streaming=False)
    sent: list[dict[str, Any]] = []
    model.client.meta.events.register("provide-client-params.bedrock-runtime.Converse",
                                      lambda params, **_: sent.append(params))
    agent.set_assistant(Assistant(replace(settings, memory_backend=store.name), store, model))
    try:
        with Stubber(model.client) as stubber, TestClient(agent.app) as client:
            yield client, stubber, sent
            stubber.assert_no_pending_responses()
    finally:
        agent.set_assistant(None)


def test_a_throttled_chat_fails_fast_with_a_503_instead_of_strands_backing_off(
    bedrock_client: tuple[TestClient, Stubber, list[dict[str, Any]]], sqlite_store: SessionStore
) -> None:
    """Strands' default retry strategy would sleep 4 s and call again (here: a second call the
    Stubber has no answer for). The chat agent has none: one call, a 503, and the client retries."""
    client, stubber, sent = bedrock_client
    store = sqlite_store
    stubber.add_response("converse", converse_reply("hello"))
    stubber.add_client_error("converse", service_error_code="ThrottlingException", http_status_code=429,
                             service_message="Too many requests")
    stubber.add_response("converse", converse_reply("here you go"))
    assert post(client, "hi").json()["response"] == "hello"

    response = post(client, "again")
    assert response.status_code == 503
    assert response.json()["error"].startswith("model call failed: throttled: ")
    assert "Too many requests" in response.json()["error"]
    assert len(sent) == 2  # the throttled call was not repeated
    assert [[m.text for m in e.messages] for e in store.list_events("default_user", "conv")] == [["hi", "hello"]]

    retried = post(client, "again")
    assert (retried.status_code, retried.json()["message_count"]) == (200, 2)
    assert [m["role"] for m in sent[-1]["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize(("code", "status"), [("ServiceUnavailableException", 503), ("ModelNotReadyException", 503),
                                              ("ModelTimeoutException", 503), ("ValidationException", 502),
                                              ("AccessDeniedException", 502)])
def test_bedrock_errors_say_whether_to_retry(bedrock_client: tuple[TestClient, Stubber, list[dict[str, Any]]],
                                             sqlite_store: SessionStore, code: str, status: int) -> None:
    client, stubber, _ = bedrock_client
    store = sqlite_store
    stubber.add_client_error("converse", service_error_code=code, http_status_code=400 if status == 502 else 503,
                             service_message="injected")
    response = post(client, "hi")
    assert response.status_code == status
    assert code in response.json()["error"]
    assert store.list_events("default_user", "conv") == []


class Unresponsive:
    """A loopback TCP server standing in for Bedrock: it reads each request and never answers,
    or (``stall_mid_stream``) starts a 200 event-stream reply and then goes silent."""

    def __init__(self, stall_mid_stream: bool) -> None:
        self.stall_mid_stream = stall_mid_stream
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections.append(connection)
            connection.recv(65536)
            if self.stall_mid_stream:
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.amazon.eventstream\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n")

    def close(self) -> None:
        self.socket.close()
        for connection in self.connections:
            connection.close()


@pytest.mark.parametrize("stall_mid_stream", [False, True], ids=["no reply", "stalls mid-stream"])
def test_a_bedrock_timeout_is_a_503_and_stores_nothing(monkeypatch: pytest.MonkeyPatch, settings,
                                                       sqlite_store: SessionStore, stall_mid_stream: bool) -> None:
    store = sqlite_store
    endpoint = Unresponsive(stall_mid_stream)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", f"http://127.0.0.1:{endpoint.port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    model = BedrockModel(model_id=settings.bedrock_model_id, region_name="us-west-2", streaming=True,
                         boto_client_config=Config(read_timeout=0.3, connect_timeout=0.3,
                                                   retries={"mode": "standard", "total_max_attempts": 1}))
    agent.set_assistant(Assistant(replace(settings, memory_backend=store.name), store, model))
    try:
        with TestClient(agent.app) as client:
            response = post(client, "are you there?")
    finally:
        agent.set_assistant(None)
        endpoint.close()
    assert response.status_code == 503
    assert response.json()["error"].startswith("model call failed: timed out: ReadTimeoutError")
    assert store.list_events("default_user", "conv") == []
