"""Many clients at once: every turn stored exactly once, counts exactly 1..N, histories well-formed.

The real server (``python agent.py``, echo model) on ``memory``, ``sqlite``, ``redis``, a Redis
Cluster and DynamoDB Local: 16 clients x 12 messages on ONE session while 100 other clients each
talk to their own session (2 messages each), all at once; on Redis, the cluster and DynamoDB
through two server processes (replicas) on one key prefix / table. AgentCore Memory cannot be
reached from a subprocess (its fake answers through a Stubber in this process), so it gets the
same shape in-process through the entrypoint (16 x 8 and 100 x 2), as does ``memory``, whose
store cannot be read from outside the server.

Sizes: the issue's 16 x 50 takes 3.5-8 s per backend on two cores (the echo model's turn is
mostly Strands' own per-call overhead); what finds a race is 16 writers on one session at
once and 100 sessions in flight, not the number of turns each sends, so each run stays near
two seconds. ``ROLLING_SUMMARY=off``: past ``MEMORY_K`` turns the summary adds a second model
call per turn, inside the same session lock, and would make the runs four times longer.
``SESSION_QUEUE_MAX`` is raised to the number of clients on the busy session: by default
a ninth waiting request is refused with a 429 (``tests/test_session_queue.py``), and here
every client must get its turns through.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from bedrock_agentcore.runtime.context import RequestContext
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

import agent
from agent import chat_handler
from service import Assistant
from core.settings import Settings
from memory.base import SessionStore
from memory.redis_store import RedisStore
from memory.sqlite import SQLiteStore
from memory.dynamodb import DynamoDBStore, create_table
from models import EchoModel
from tests.conftest import SESSION_HEADER, STORE_FACTORIES, unique_table
from tests.helpers.dynamodb_local import CLIENT_ENV
from tests.helpers.redis_cluster import delete_cluster_prefix
from tests.helpers.http_load import Load, LogDrain, echo, http_caller, in_threads
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.redis_server import delete_prefix, unique_prefix
from tests.helpers.server import Server

#: sized to finish in seconds on two cores; 16 concurrent writers on one session and 100 sessions
#: in flight are what matter, not the number of turns each sends
SERVER_LOAD = Load(clients=16, per_client=12, sessions=100, per_session=2)
#: in-process: AgentCore's fake answers every call through botocore's Stubber (a few ms each)
IN_PROCESS_LOAD = Load(clients=16, per_client=8, sessions=100, per_session=2)


# -- the real server -------------------------------------------------------------------------------

@dataclass
class LiveServers:
    servers: list[Server]  # replicas on the same store
    logs: list[LogDrain]
    store: SessionStore | None  # the same data, read from the test process (None: memory)


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster", "dynamodb"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServers]:
    """One server; for Redis, Redis Cluster and DynamoDB two, on one key prefix / table: replicas must
    stay correct too (the write is one atomic script, or one conditional transaction, so counts stay
    gap-free across processes)."""
    backend = "redis" if request.param == "redis-cluster" else request.param
    env = {"MEMORY_BACKEND": backend, "ROLLING_SUMMARY": "off", "SESSION_DB": str(tmp_path / "s.db"),
           "SESSION_QUEUE_MAX": str(SERVER_LOAD.clients)}
    store: SessionStore | None = None
    prefix = unique_prefix()
    replicas = 1
    cleanup = lambda: None  # noqa: E731
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "s.db")
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        env.update(REDIS_URL=url, KEY_PREFIX=prefix)
        store = RedisStore.from_url(url, key_prefix=prefix)
        replicas = 2
        cleanup = lambda: delete_prefix(url, prefix)  # noqa: E731
    elif request.param == "redis-cluster":
        url = request.getfixturevalue("redis_cluster").url
        env.update(REDIS_URL=url, REDIS_CLUSTER="on", KEY_PREFIX=prefix)
        store = RedisStore.from_url(url, key_prefix=prefix, cluster=True)
        replicas = 2
        cleanup = lambda: delete_cluster_prefix(url, prefix)  # noqa: E731
    elif request.param == "dynamodb":
        engine = request.getfixturevalue("dynamodb_local")
        table = unique_table()
        client = engine.client()
        create_table(client, table)
        env.update(DYNAMODB_ENDPOINT_URL=engine.endpoint, DYNAMODB_TABLE=table, **CLIENT_ENV)
        store = DynamoDBStore(client, table)
        replicas = 2
        cleanup = lambda: client.delete_table(TableName=table)  # noqa: E731
    servers = in_threads(lambda: Server(env).start(), [()] * replicas)
    try:
        yield LiveServers(servers, [LogDrain(server) for server in servers], store)
    finally:
        for server in servers:
            server.stop()
        if store is not None:
            store.close()
        cleanup()


def test_many_clients_on_one_session_and_100_sessions_at_once_on_the_running_server(live: LiveServers) -> None:
    load, servers = SERVER_LOAD, live.servers
    results = in_threads(http_caller, [(servers[i % len(servers)].port, load, kind, i) for kind, i in load.callers()])
    load.check(results, live.store)  # the store: read by the test process from the same file / Redis
    # the server's own view: the next turn of the busy session follows the last one, with a full window
    status, body = servers[-1].invoke({"message": "after the storm"}, "busy")
    assert (status, body["message_count"], body["history_length"]) == (200, load.clients * load.per_client + 1, 10)

    request_lines = []
    for server, log in zip(servers, live.logs):
        server.stop()
        request_lines += [line for line in log.wait_closed() if " service.logs: request_id=<" in line]
    assert len(request_lines) == load.requests + 1  # one log line per request, also under load
    assert all("status=<200>" in line for line in request_lines)


# -- in-process: AgentCore Memory (through its Stubber-backed fake) and the in-process store ---------

@pytest.fixture(params=["memory", "agentcore"])
def in_process(request: pytest.FixtureRequest, tmp_path: Path, settings: Settings) -> Iterator[SessionStore]:
    factory = STORE_FACTORIES[request.param](request, tmp_path)
    store = factory.make()
    agent.set_assistant(Assistant(replace(settings, memory_backend=store.name, rolling_summary=False,
                                          session_queue_max=IN_PROCESS_LOAD.clients), store, EchoModel()))
    try:
        yield store
    finally:
        agent.set_assistant(None)
        store.close()
        factory.cleanup()


def handler_post(body: dict, session: str) -> tuple[int, dict]:
    """What the runtime does per request: call the entrypoint (in one of its worker threads)."""
    response = chat_handler(body, RequestContext(session_id=session, request_headers=None))
    if isinstance(response, JSONResponse):
        return response.status_code, json.loads(response.body)
    return 200, response


def test_many_callers_on_one_session_and_100_sessions_at_once_in_process(in_process: SessionStore) -> None:
    load = IN_PROCESS_LOAD
    results = in_threads(lambda kind, i: load.run(handler_post, kind, i), load.callers())
    load.check(results, in_process)


# -- one Agent per request ---------------------------------------------------------------------

class MeetingModel(ScriptedModel):
    """Echoes, but each call waits until ``parties`` calls are inside the model at the same time."""

    def __init__(self, parties: int) -> None:
        super().__init__(echo=True)
        self.barrier = threading.Barrier(parties, timeout=20)

    async def stream(self, messages, tool_specs=None, system_prompt=None, **kwargs):  # type: ignore[override]
        self.barrier.wait()  # blocks this agent's own event loop thread, as a slow model would
        async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
            yield event


def test_concurrent_requests_each_run_their_own_agent(client: TestClient, assistant: Assistant) -> None:
    """Eight requests are inside the model at the same moment: with one shared Strands Agent the
    second would fail at once (``ConcurrencyException``) and the others would wait at the barrier
    in vain; with one global lock the first would. Each call also sees only its own session."""
    parties = 8
    for s in range(parties):
        assert client.post("/invocations", json={"message": f"earlier in {s}"},
                           headers={SESSION_HEADER: f"meet-{s}"}).status_code == 200
    model = assistant.model = MeetingModel(parties)

    def call(s: int) -> tuple[int, dict]:
        response = client.post("/invocations", json={"message": f"now in {s}"}, headers={SESSION_HEADER: f"meet-{s}"})
        return response.status_code, response.json()

    results = in_threads(call, [(s,) for s in range(parties)])
    for s, (status, body) in enumerate(results):
        assert status == 200, body
        assert (body["response"], body["message_count"], body["history_length"]) == (echo(f"now in {s}"), 2, 1)
    seen = sorted(tuple(text for _, text in model.seen_texts(index)) for index in range(parties))
    assert seen == sorted((f"earlier in {s}", echo(f"earlier in {s}"), f"now in {s}") for s in range(parties))
