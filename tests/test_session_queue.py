"""Head-of-line blocking: one busy session never takes the server down.

A request waiting for its session holds no thread; at most ``SESSION_QUEUE_MAX`` wait per
session and the next is refused at once with a 429 JSON and ``Retry-After``; ``/ping``, other
sessions and bad requests are answered while any number of requests target one session.

The server is ``agent.app`` under uvicorn in this process, configured as ``main()`` does,
with a model that holds every turn of the busy session until the test opens its gate: what
is running and what is waiting is then known exactly, without timing anything.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from core.settings import Settings
from memory.base import SessionStore
from service import Assistant
from tests.conftest import REQUEST_PATH_BACKENDS, store_factory_over
from tests.helpers.http_load import echo
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.server import SESSION_HEADER, InProcessServer

#: the request path alone: the same code whatever the store (the contract suite covers every backend)
store_factory = store_factory_over(REQUEST_PATH_BACKENDS)

QUEUE_MAX = 8
CLIENTS = 64  # on the one busy session, all at once


class GatedModel(ScriptedModel):
    """Echoes; a turn whose message starts with ``busy`` waits for ``gate`` first (a slow model turn)."""

    def __init__(self) -> None:
        super().__init__(echo=True)
        self.gate = threading.Event()
        self.entered = threading.Event()

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[Any]:
        last = messages[-1]["content"][0].get("text", "")
        if last.startswith("busy"):
            self.entered.set()
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
        async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
            yield event


@pytest.fixture
def served(settings: Settings, store: SessionStore) -> Iterator[tuple[InProcessServer, GatedModel]]:
    model = GatedModel()
    assistant = Assistant(replace(settings, memory_backend=store.name, session_queue_max=QUEUE_MAX,
                                  rolling_summary=False), store, model)
    server = InProcessServer(assistant)
    try:
        with server:
            yield server, model
    finally:
        model.gate.set()
        assistant.close()


def post(port: int, body: bytes | dict, session: str, timeout: float = 60) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        connection.request("POST", "/invocations", data, {"Content-Type": "application/json", SESSION_HEADER: session})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def ping(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().status
    finally:
        connection.close()


def wait_until(condition: Any, what: str, limit: float = 30) -> None:
    """Poll ``condition`` (a bounded wait for the server to get somewhere, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


def test_a_busy_session_queues_eight_refuses_the_rest_and_never_blocks_ping_or_other_sessions(
        served: tuple[InProcessServer, GatedModel], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="service.logs")
    server, model = served
    assistant = server.assistant
    results: list[tuple[int, dict[str, str], Any] | None] = [None] * CLIENTS

    def client(n: int) -> None:
        results[n] = post(server.port, {"message": f"busy {n}"}, "busy")

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    refused_count = CLIENTS - QUEUE_MAX - 1
    wait_until(lambda: sum(1 for r in results if r is not None) >= refused_count, "the refusals")

    # the busy session: one turn inside the model, QUEUE_MAX waiting, every other request refused at once
    assert model.entered.wait(30) and not model.gate.is_set()
    assert assistant.slots.waiting(("default_user", "busy")) == QUEUE_MAX
    refused = [r for r in results if r is not None]
    assert len(refused) == refused_count
    for status, headers, body in refused:
        assert status == 429
        assert "SESSION_QUEUE_MAX=8" in body["error"]
        assert int(headers["retry-after"]) >= 1

    # while all of that is pending: /ping, another session and a bad request are answered
    assert ping(server.port) == 200
    assert post(server.port, {"message": "hello"}, "elsewhere")[0::2] == (200, {
        "response": echo("hello"), "session_id": "elsewhere", "actor_id": "default_user",
        "message_count": 1, "history_length": 0})
    status, _, body = post(server.port, {"message": ""}, "elsewhere")
    assert (status, body) == (400, {"error": "'message' must not be empty"})
    status, _, body = post(server.port, {"message": "hi"}, "bad:id")
    assert status == 400 and "session id" in body["error"]
    assert sum(1 for r in results if r is not None) == refused_count  # the busy session's requests still pending

    model.gate.set()
    for thread in threads:
        thread.join(60)
    accepted = [(n, r) for n, r in enumerate(results) if r is not None and r[0] == 200]
    assert len(accepted) == QUEUE_MAX + 1
    assert sorted(body["message_count"] for _, (_, _, body) in accepted) == list(range(1, QUEUE_MAX + 2))
    for n, (_, _, body) in accepted:
        assert body["response"] == echo(f"busy {n}")
    stored = [m.text for e in assistant.store.list_events("default_user", "busy") for m in e.messages]
    assert sorted(stored[0::2]) == sorted(f"busy {n}" for n, _ in accepted)  # each accepted turn once
    assert assistant.slots.waiting(("default_user", "busy")) == 0
    lines = [r for r in caplog.records if r.name == "service.logs" and r.getMessage().startswith("request_id=<")]
    assert sorted(r.fields["status"] for r in lines) == sorted(
        [200] * (QUEUE_MAX + 1) + [429] * refused_count + [200, 400, 400])  # one line each, the 429s too


def test_a_waiter_whose_client_hangs_up_leaves_the_queue_and_is_never_run(
        served: tuple[InProcessServer, GatedModel]) -> None:
    server, model = served
    assistant = server.assistant
    key = ("default_user", "busy")
    first = threading.Thread(target=post, args=(server.port, {"message": "busy first"}, "busy"), daemon=True)
    first.start()
    wait_until(model.entered.is_set, "the first turn to reach the model")

    quitter = socket.create_connection(("127.0.0.1", server.port))  # waits, then hangs up
    body = json.dumps({"message": "busy quitter"}).encode()
    quitter.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"{SESSION_HEADER}: busy\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    wait_until(lambda: assistant.slots.waiting(key) == 1, "the quitter to queue")
    waiting = [threading.Thread(target=post, args=(server.port, {"message": f"busy {n}"}, "busy"), daemon=True)
               for n in range(QUEUE_MAX - 1)]
    for thread in waiting:
        thread.start()
    wait_until(lambda: assistant.slots.waiting(key) == QUEUE_MAX, "a full queue")
    assert post(server.port, {"message": "busy one too many"}, "busy")[0] == 429

    quitter.close()
    wait_until(lambda: assistant.slots.waiting(key) == QUEUE_MAX - 1, "the quitter to leave the queue")
    late = threading.Thread(target=post, args=(server.port, {"message": "busy late"}, "busy"), daemon=True)
    late.start()  # its place is free again
    wait_until(lambda: assistant.slots.waiting(key) == QUEUE_MAX, "the late one to queue")

    model.gate.set()
    for thread in [first, *waiting, late]:
        thread.join(60)
    stored = [m.text for e in assistant.store.list_events("default_user", "busy") for m in e.messages][0::2]
    assert sorted(stored) == sorted(["busy first", *(f"busy {n}" for n in range(QUEUE_MAX - 1)), "busy late"])
    assert all(("user", "busy quitter") not in model.seen_texts(call) for call in range(len(model.calls)))
