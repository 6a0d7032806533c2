"""``"stream": true``: Server-Sent Events of text deltas, then one final event; whole turns or none."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import AsyncIterable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import uvicorn
from bedrock_agentcore.runtime.context import RequestContext
from starlette.testclient import TestClient
from strands.types.content import Messages
from strands.types.streaming import StreamEvent

import agent
from agent import chat_handler
from service import Assistant
from core.settings import Settings
from memory.base import SessionStore
from tests.conftest import ACTOR_HEADER, SESSION_HEADER
from tests.helpers.http_load import in_thread
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.server import free_port
from tests.conftest import REQUEST_PATH_BACKENDS, store_factory_over

#: the request path alone: the same code whatever the store (the contract suite covers every backend)
store_factory = store_factory_over(REQUEST_PATH_BACKENDS)

Event = str | dict[str, Any]


def sse_events(body: str) -> list[Event]:
    """The JSON value of every ``data:`` line of a text/event-stream body, in order."""
    return [json.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]


def stream(client: TestClient, body: dict[str, Any], session: str, **headers: str) -> list[Event]:
    headers[SESSION_HEADER] = session
    with client.stream("POST", "/invocations", json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_events(response.read().decode())


def test_stream_sends_text_deltas_then_one_final_event(client: TestClient) -> None:
    *deltas, final = stream(client, {"message": "Hello there", "stream": True}, "conv1")
    assert len(deltas) > 1 and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == "You said 'Hello there'"
    assert final == {"session_id": "conv1", "actor_id": "default_user", "message_count": 1, "history_length": 0}


def test_streamed_turns_are_remembered_like_plain_ones(client: TestClient, model: ScriptedModel) -> None:
    assert stream(client, {"message": "My name is Ana", "stream": True}, "conv1")[-1]["message_count"] == 1
    second = stream(client, {"prompt": "Who am I?", "stream": True}, "conv1", **{ACTOR_HEADER: "default_user"})
    assert second[-1] == {"session_id": "conv1", "actor_id": "default_user", "message_count": 2, "history_length": 1}
    assert ("assistant", "You said 'My name is Ana'") in model.seen_texts()
    plain = client.post("/invocations", json={"message": "And now?"}, headers={SESSION_HEADER: "conv1"}).json()
    assert (plain["message_count"], plain["history_length"]) == (3, 2)
    assert stream(client, {"message": "Hi", "stream": True}, "conv2")[-1]["message_count"] == 1


def test_bad_input_with_stream_true_is_a_plain_json_400(client: TestClient) -> None:
    for body in ({"message": "", "stream": True}, {"message": "hi", "stream": "yes"}):
        response = client.post("/invocations", json=body, headers={SESSION_HEADER: "ok"})
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]


def test_model_failure_is_a_final_error_event_and_nothing_is_stored(client: TestClient,
                                                                    model: ScriptedModel) -> None:
    stream(client, {"message": "first", "stream": True}, "c")
    model.steps.append(RuntimeError("upstream broke"))
    events = stream(client, {"message": "second", "stream": True}, "c")
    assert events == [{"error": "model call failed: RuntimeError: upstream broke", "status": 502}]
    assert stream(client, {"message": "third", "stream": True}, "c")[-1]["message_count"] == 2


def test_truncated_reply_is_streamed_stored_and_flagged(client: TestClient, assistant: Assistant,
                                                        model: ScriptedModel) -> None:
    model.steps.append({"text": "Once upon a", "stop_reason": "max_tokens"})
    *deltas, final = stream(client, {"message": "Tell me a story", "stream": True}, "c")
    assert "".join(deltas) == "Once upon a"
    assert final == {"session_id": "c", "actor_id": "default_user", "message_count": 1, "history_length": 0,
                     "truncated": True}
    [event] = assistant.store.list_events("default_user", "c")
    assert [m.text for m in event.messages] == ["Tell me a story", "Once upon a"]


# -- the generator itself: disconnects and the session lock --------------------------------------

class GatedModel(ScriptedModel):
    """First call: says "Hello " and waits for ``gate`` before "world"; later calls echo."""

    def __init__(self) -> None:
        super().__init__(echo=True)
        self.gate = threading.Event()
        self.gated_calls = 0

    async def stream(self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[StreamEvent]:
        if self.gated_calls:
            async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
                yield event
            return
        self.gated_calls += 1
        yield {"messageStart": {"role": "assistant"}}
        yield {"contentBlockStart": {"start": {}}}
        yield {"contentBlockDelta": {"delta": {"text": "Hello "}}}
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        yield {"contentBlockDelta": {"delta": {"text": "world"}}}
        yield {"contentBlockStop": {}}
        yield {"messageStop": {"stopReason": "end_turn"}}


@pytest.fixture
def gated(settings: Settings, store: SessionStore) -> tuple[Assistant, GatedModel]:
    model = GatedModel()
    return Assistant(replace(settings, memory_backend=store.name), store, model), model


def ctx(session_id: str) -> RequestContext:
    return RequestContext(session_id=session_id, request_headers=None)


def test_a_client_that_leaves_mid_stream_stores_nothing_and_frees_the_session(
        gated: tuple[Assistant, GatedModel]) -> None:
    assistant, model = gated
    events = assistant.handle({"message": "Hello", "stream": True}, ctx("conv1"))
    assert next(events) == "Hello "
    events.close()  # what the runtime does when the client disconnects
    model.gate.set()
    thread, out = in_thread(lambda: assistant.handle({"message": "Again"}, ctx("conv1")))
    thread.join(30)
    assert not thread.is_alive(), "the session stayed locked after the client left"
    assert (out["result"]["message_count"], out["result"]["history_length"]) == (1, 0)
    [event] = assistant.store.list_events("default_user", "conv1")
    assert [m.text for m in event.messages] == ["Again", "You said 'Again'"]


def test_the_stream_holds_the_session_lock_for_the_whole_turn(gated: tuple[Assistant, GatedModel]) -> None:
    assistant, model = gated
    events = assistant.handle({"message": "Hello", "stream": True}, ctx("conv1"))
    assert next(events) == "Hello "
    thread, out = in_thread(lambda: assistant.handle({"message": "Next"}, ctx("conv1")))
    other = assistant.handle({"message": "Elsewhere"}, ctx("conv2"))  # other sessions are not blocked
    assert other["message_count"] == 1
    # "Next" is queued behind the stream's turn (not merely not started yet): were the session not locked,
    # it would have run by now and taken turn 1
    deadline = time.monotonic() + 30
    while assistant.slots.waiting(("default_user", "conv1")) != 1:
        assert time.monotonic() < deadline and thread.is_alive(), "Next neither queued nor waiting"
        time.sleep(0.01)
    assert assistant.store.list_events("default_user", "conv1") == []
    model.gate.set()
    assert list(events) == ["world", {"session_id": "conv1", "actor_id": "default_user", "message_count": 1,
                                      "history_length": 0}]
    thread.join(30)
    assert (out["result"]["message_count"], out["result"]["history_length"]) == (2, 1)


def test_a_stream_nobody_reads_runs_nothing(gated: tuple[Assistant, GatedModel]) -> None:
    assistant, model = gated
    assistant.handle({"message": "Hello", "stream": True}, ctx("conv1")).close()
    assert model.calls == [] and assistant.store.list_events("default_user", "conv1") == []


def test_chat_handler_returns_the_stream_for_the_runtime(assistant: Assistant) -> None:
    *deltas, final = list(chat_handler({"message": "Hi you", "stream": True}, ctx("s")))
    assert "".join(deltas) == "You said 'Hi you'" and final["message_count"] == 1


# -- a real HTTP server: the client closes its connection mid-stream ------------------------------

@pytest.fixture
def uvicorn_server(gated: tuple[Assistant, GatedModel]) -> Iterator[tuple[int, Assistant, GatedModel]]:
    """agent.app served by uvicorn in this process (so the test can gate the model), on a free port."""
    assistant, model = gated
    agent.set_assistant(assistant)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(agent.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield port, assistant, model
    model.gate.set()
    server.should_exit = True
    thread.join(30)
    agent.set_assistant(None)


def test_a_client_that_hangs_up_mid_stream_cancels_the_turn(
        uvicorn_server: tuple[int, Assistant, GatedModel], caplog: pytest.LogCaptureFixture) -> None:
    port, assistant, model = uvicorn_server
    caplog.set_level(logging.INFO, logger="service")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/invocations", body=json.dumps({"message": "Hello", "stream": True}),
                       headers={SESSION_HEADER: "conv1", "Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.readline() == b'data: "Hello "\n'
    connection.sock.shutdown(socket.SHUT_RDWR)  # the user pressed Ctrl-C
    connection.close()
    deadline = time.monotonic() + 20
    while "client disconnected mid-stream" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "client disconnected mid-stream" in caplog.text  # noticed while the model was still writing
    model.gate.set()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=b'{"message": "Again"}',
                                     headers={SESSION_HEADER: "conv1"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as reply:
        body = json.loads(reply.read())
    assert (body["message_count"], body["history_length"]) == (1, 0)  # none of the abandoned turn was kept
    assert [m.text for e in assistant.store.list_events("default_user", "conv1") for m in e.messages] == [
        "Again", "You said 'Again'"]
