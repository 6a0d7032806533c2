"""Exactly-once retries (#11 item 8): a request's ``Idempotency-Key`` (or ``idempotency_key``) stores its turn once.

A retry with the key answers the stored reply and count, ``replayed``, without calling the
model; two identical keyed requests at once, on one server or on two replicas of one store,
store one turn and answer the same reply.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bedrock_agentcore.runtime.context import RequestContext
from starlette.responses import JSONResponse
from starlette.testclient import TestClient
from strands.types.content import Messages
from strands.types.streaming import StreamEvent

from agent import chat_handler
from core.settings import Settings
from memory.base import SessionStore
from service import Assistant
from tests.conftest import SESSION_HEADER, StoreFactory
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.server import Server

ACTOR = "default_user"


def ctx(session: str, **headers: str) -> RequestContext:
    return RequestContext(session_id=session, request_headers=headers or None)


def events_of(store: SessionStore, session: str, actor: str = ACTOR) -> list[list[str]]:
    return [[m.text for m in e.messages] for e in store.list_events(actor, session)]


def sse_events(body: str) -> list[Any]:
    return [json.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]


# -- a retry -----------------------------------------------------------------------------------------

def test_a_retry_with_the_same_key_answers_the_stored_reply_and_calls_the_model_once(
        assistant: Assistant, model: ScriptedModel, store: SessionStore) -> None:
    chat_handler({"message": "I live in Oslo"}, ctx("trip"))
    first = chat_handler({"message": "Book a flight", "idempotency_key": "req-7f3a"}, ctx("trip"))
    retry = chat_handler({"message": "Book a flight", "idempotency_key": "req-7f3a"}, ctx("trip"))
    assert first == {"response": "You said 'Book a flight'", "session_id": "trip", "actor_id": ACTOR,
                     "message_count": 2, "history_length": 1}
    assert retry == {**first, "history_length": 0, "replayed": True}
    assert len(model.calls) == 2  # the first message and the first attempt; the retry called no model
    assert events_of(store, "trip") == [["I live in Oslo", "You said 'I live in Oslo'"],
                                        ["Book a flight", "You said 'Book a flight'"]]
    after = chat_handler({"message": "Thanks"}, ctx("trip"))
    assert (after["message_count"], after["history_length"]) == (3, 2)


def test_a_different_key_or_no_key_stores_a_new_turn(assistant: Assistant, model: ScriptedModel,
                                                     store: SessionStore) -> None:
    counts = [chat_handler(body, ctx("s1"))["message_count"] for body in (
        {"message": "hi", "idempotency_key": "a"}, {"message": "hi", "idempotency_key": "b"},
        {"message": "hi"}, {"message": "hi"})]
    assert counts == [1, 2, 3, 4]
    assert len(model.calls) == 4 and len(store.list_events(ACTOR, "s1")) == 4
    # the same key in another session, or for another actor, is another request
    assert chat_handler({"message": "hi", "idempotency_key": "a"}, ctx("s2"))["message_count"] == 1
    other = chat_handler({"message": "hi", "idempotency_key": "a", "actor_id": "bob"}, ctx("s1"))
    assert other["message_count"] == 1 and "replayed" not in other


def test_the_key_comes_as_a_header_in_any_case_quoted_or_not_or_as_a_field(
        client: TestClient, model: ScriptedModel, store: SessionStore) -> None:
    def send(body: dict[str, Any], **headers: str) -> dict[str, Any]:
        response = client.post("/invocations", json=body, headers={SESSION_HEADER: "s1", **headers})
        assert response.status_code == 200, response.text
        return response.json()

    first = send({"message": "pay the invoice"}, **{"Idempotency-Key": "8e03978e-40d5-43e8-bc93-6894a57f9324"})
    retries = [
        send({"message": "pay the invoice"}, **{"idempotency-key": '"8e03978e-40d5-43e8-bc93-6894a57f9324"'}),
        send({"message": "pay the invoice", "idempotency_key": "8e03978e-40d5-43e8-bc93-6894a57f9324"}),
        send({"message": "pay the invoice", "idempotency_key": "8e03978e-40d5-43e8-bc93-6894a57f9324"},
             **{"IDEMPOTENCY-KEY": "8e03978e-40d5-43e8-bc93-6894a57f9324"}),
    ]
    assert "replayed" not in first
    assert all(r == {**first, "history_length": 0, "replayed": True} for r in retries)
    assert len(model.calls) == 1 and len(store.list_events(ACTOR, "s1")) == 1


def test_a_streamed_retry_is_the_stored_reply_as_one_delta_and_a_final_event(
        client: TestClient, model: ScriptedModel, store: SessionStore) -> None:
    def stream(body: dict[str, Any]) -> list[Any]:
        with client.stream("POST", "/invocations", json={**body, "stream": True},
                           headers={SESSION_HEADER: "s1", "Idempotency-Key": "k-1"}) as response:
            assert response.status_code == 200
            return sse_events(response.read().decode())

    *deltas, final = stream({"message": "hello there"})
    assert "".join(deltas) == "You said 'hello there'" and len(deltas) > 1
    assert final == {"session_id": "s1", "actor_id": ACTOR, "message_count": 1, "history_length": 0}
    assert stream({"message": "hello there"}) == [
        "You said 'hello there'",
        {"response": "You said 'hello there'", "session_id": "s1", "actor_id": ACTOR, "message_count": 1,
         "history_length": 0, "replayed": True},
    ]
    plain = client.post("/invocations", json={"message": "hello there"},
                        headers={SESSION_HEADER: "s1", "Idempotency-Key": "k-1"}).json()
    assert plain["replayed"] is True and plain["response"] == "You said 'hello there'"
    assert len(model.calls) == 1 and len(store.list_events(ACTOR, "s1")) == 1


# -- at once -----------------------------------------------------------------------------------------

def test_identical_keyed_requests_at_once_on_one_server_store_one_turn(
        assistant: Assistant, model: ScriptedModel, store: SessionStore) -> None:
    barrier = threading.Barrier(6)

    def send(_: int) -> dict[str, Any]:
        barrier.wait()
        return chat_handler({"message": "transfer 100", "idempotency_key": "once"}, ctx("bank"))

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(6)))
    assert {(a["response"], a["message_count"]) for a in answers} == {("You said 'transfer 100'", 1)}
    assert sum(1 for a in answers if a.get("replayed")) == 5
    assert len(model.calls) == 1
    assert events_of(store, "bank") == [["transfer 100", "You said 'transfer 100'"]]


class RendezvousModel(ScriptedModel):
    """Each replica's model: waits until every replica's model was called, then answers in its own words.

    So every replica has passed the idempotency pre-check before any of them stores: the
    store's own check decides, and each answer shows whose reply it is.
    """

    def __init__(self, name: str, rendezvous: threading.Barrier) -> None:
        super().__init__(echo=True)
        self.name = name
        self.rendezvous = rendezvous

    async def stream(self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[StreamEvent]:
        await asyncio.to_thread(self.rendezvous.wait, 30)
        self.steps.insert(0, f"reply from {self.name}")
        async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
            yield event


@pytest.fixture
def two_replicas(settings: Settings, store_factory: StoreFactory) -> Iterator[list[Assistant]]:
    """Two Assistants (two server replicas) on one store: one SQLite file, one Redis prefix, one memory
    resource; ``memory`` (in-process) shares one store object."""
    rendezvous = threading.Barrier(2)
    first = store_factory.make()
    stores = [first, first if store_factory.name == "memory" else store_factory.make()]
    replicas = [Assistant(replace(settings, memory_backend=s.name), s, RendezvousModel(name, rendezvous))
                for s, name in zip(stores, ("A", "B"))]
    yield replicas
    for replica in replicas:
        replica.close()


def answer_of(response: Any) -> Any:
    """A plain answer as it is; a stream's events, as the final event with the streamed text as ``response``."""
    if isinstance(response, (dict, JSONResponse)):
        return response
    *deltas, final = list(response)
    return {"response": "".join(deltas), **final}  # a replayed final event's own ``response`` wins


@pytest.mark.parametrize("stream", [False, True])
def test_identical_keyed_requests_at_once_on_two_replicas_store_one_turn_and_answer_alike(
        two_replicas: list[Assistant], stream: bool) -> None:
    a, b = two_replicas
    body = {"message": "transfer 100", "idempotency_key": "once", "stream": stream}
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda replica: answer_of(replica.handle(body, ctx("bank"))), (a, b)))
    assert all(isinstance(answer, dict) for answer in answers), answers
    [stored] = events_of(a.store, "bank")
    assert stored[0] == "transfer 100" and stored[1] in ("reply from A", "reply from B")
    # the replica that lost the race answers the winner's stored reply, not its own
    assert [(x["response"], x["message_count"]) for x in answers] == [(stored[1], 1)] * 2
    assert sorted(bool(x.get("replayed")) for x in answers) == [False, True]
    assert len(a.model.calls) == len(b.model.calls) == 1


def test_identical_keyed_requests_at_once_on_two_server_processes_store_one_turn(tmp_path: Path) -> None:
    env = {"SESSION_DB": str(tmp_path / "shared.db"), "MEMORY_BACKEND": "sqlite"}
    servers = [Server(env).start(), Server(env).start()]
    try:
        barrier = threading.Barrier(8)

        def send(n: int) -> tuple[int, Any]:
            barrier.wait()
            return servers[n % 2].invoke({"message": "transfer 100"}, session="bank",
                                         headers={"Idempotency-Key": "once-across-processes"})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(8)))
        assert {status for status, _ in answers} == {200}
        assert {(body["response"], body["message_count"]) for _, body in answers} == {("You said 'transfer 100'", 1)}
        assert sum(1 for _, body in answers if not body.get("replayed")) == 1
        status, history = servers[1].invoke({"action": "get_history"}, session="bank")
        assert status == 200 and [t["user"] for t in history["turns"]] == ["transfer 100"]
        assert history["message_count"] == 1
    finally:
        for server in servers:
            server.stop()


# -- bad keys ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "headers", "names"), [
    ({"idempotency_key": ""}, {}, "'idempotency_key'"),
    ({"idempotency_key": "k" * 256}, {}, "'idempotency_key'"),
    ({"idempotency_key": "has space"}, {}, "'idempotency_key'"),
    ({"idempotency_key": "naïve"}, {}, "'idempotency_key'"),
    ({"idempotency_key": "a;b"}, {}, "'idempotency_key'"),
    ({"idempotency_key": 42}, {}, "'idempotency_key'"),
    ({"idempotency_key": ["k"]}, {}, "'idempotency_key'"),
    ({}, {"Idempotency-Key": ""}, "Idempotency-Key header"),
    ({}, {"Idempotency-Key": '""'}, "Idempotency-Key header"),
    ({}, {"Idempotency-Key": "k" * 300}, "Idempotency-Key header"),
    ({}, {"Idempotency-Key": "a,b"}, "Idempotency-Key header"),
    ({"idempotency_key": "one"}, {"Idempotency-Key": "two"}, "differ"),
])
def test_a_bad_idempotency_key_is_a_400_naming_it_and_nothing_runs(
        client: TestClient, model: ScriptedModel, store: SessionStore, body: dict[str, Any],
        headers: dict[str, str], names: str) -> None:
    response = client.post("/invocations", json={"message": "hi", **body}, headers={SESSION_HEADER: "s1", **headers})
    assert response.status_code == 400
    assert names in response.json()["error"]
    assert model.calls == [] and store.list_events(ACTOR, "s1") == []


def test_the_idempotency_key_header_sent_twice_with_different_values_is_a_400(
        client: TestClient, model: ScriptedModel) -> None:
    response = client.post("/invocations", content=b'{"message": "hi"}',
                           headers=[(SESSION_HEADER, "s1"), ("Idempotency-Key", "one"), ("Idempotency-Key", "two")])
    assert response.status_code == 400 and "idempotency-key" in response.json()["error"]
    assert model.calls == []


def test_a_bad_key_is_refused_at_the_handler_too(assistant: Assistant, model: ScriptedModel) -> None:
    response = chat_handler({"message": "hi"}, ctx("s1", **{"idempotency-key": "no spaces allowed"}))
    assert isinstance(response, JSONResponse) and response.status_code == 400
    assert model.calls == []
