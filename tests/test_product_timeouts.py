"""The timeouts the product configures, exercised as configured: hung engines and stalled model servers.

Every test builds the store or the model exactly as start-up does (``create_store`` /
``configure_model`` from settings), never a client of its own with shorter timeouts, so what is
proven is what a deployment gets: a hung Redis or DynamoDB endpoint is a 503 after the store's
own timeouts, a stalled model server is a 503 at ``MODEL_TIMEOUT_S``, and the provider's
clean-up closes the connection it was reading (the server sees the hang-up).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import agent
from core.settings import Settings
from memory import create_store
from memory.sqlite import SQLiteStore
from models import configure_model
from models.bounded import CLEANUP_GRACE_S
from service import Assistant
from tests.conftest import SESSION_HEADER
from tests.helpers.dynamodb_local import CLIENT_ENV
from tests.helpers.redis_server import RedisServer
from tests.helpers.scripted_model import ScriptedModel

#: a deadline short enough for a test, long enough that a 503 before it would be wrong
MODEL_TIMEOUT_S = 3.0


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(assistant)``: the app over HTTP with that assistant, closed afterwards."""
    made: list[Assistant] = []

    def start(assistant: Assistant) -> TestClient:
        made.append(assistant)
        agent.set_assistant(assistant)
        return TestClient(agent.app)

    yield start
    agent.set_assistant(None)
    for assistant in made:
        assistant.close()


def timed_post(client: TestClient, message: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    response = client.post("/invocations", json={"message": message}, headers={SESSION_HEADER: "conv"})
    return response.status_code, response.json(), time.monotonic() - started


# -- engines ----------------------------------------------------------------------------------------

def test_a_hung_redis_is_a_503_after_the_stores_own_socket_timeout(tmp_path: Path, serve: Any) -> None:
    from memory.redis_store import SOCKET_TIMEOUT

    server = RedisServer(tmp_path / "redis").start()
    try:
        settings = replace(Settings.from_env({}), memory_backend="redis", redis_url=server.url, model_provider="echo")
        client = serve(Assistant(settings, create_store(settings), ScriptedModel(echo=True)))
        assert timed_post(client, "one")[0] == 200
        server.freeze()
        try:
            status, body, took = timed_post(client, "two")
        finally:
            server.thaw()
        assert status == 503 and "session store 'redis' is unavailable" in body["error"]
        assert SOCKET_TIMEOUT * 0.9 <= took < SOCKET_TIMEOUT * 3, took  # the configured timeout, not a hang
        assert timed_post(client, "two")[1]["message_count"] == 2
    finally:
        server.stop()


def test_a_hung_dynamodb_endpoint_is_a_503_within_the_clients_configured_timeouts_and_retries(
        dynamodb_local: Any, serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from memory.dynamodb.table import READ_TIMEOUT

    for name, value in CLIENT_ENV.items():  # dummy credentials, as for DynamoDB Local
        monkeypatch.setenv(name, value)

    settings = replace(Settings.from_env({}), memory_backend="dynamodb", model_provider="echo", aws_region="us-west-2",
                       dynamodb_table="hung-endpoint", dynamodb_endpoint_url=dynamodb_local.endpoint,
                       dynamodb_create_table=True)
    client = serve(Assistant(settings, create_store(settings), ScriptedModel(echo=True)))
    assert timed_post(client, "one")[0] == 200
    dynamodb_local.freeze()
    try:
        status, body, took = timed_post(client, "two")
    finally:
        dynamodb_local.thaw()
    assert status == 503 and "session store 'dynamodb' is unavailable" in body["error"]
    # botocore's standard mode makes 3 attempts, each bounded by the read timeout (plus its back-off): never a hang
    assert READ_TIMEOUT * 0.9 <= took < READ_TIMEOUT * 3 + 10, took
    assert timed_post(client, "two")[1]["message_count"] == 2


# -- model servers that stall -------------------------------------------------------------------------

class StallingServer:
    """A loopback server that reads each request and then goes silent (or starts a reply and stalls);
    it records when each client hung up, which is the provider's clean-up seen from the server."""

    def __init__(self, head: bytes = b"") -> None:
        self.head = head
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.hung_up: list[float] = []
        self.received = threading.Event()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self._open.append(connection)
            threading.Thread(target=self._hold, args=(connection,), daemon=True).start()

    def _hold(self, connection: socket.socket) -> None:
        try:
            connection.recv(65536)
            self.received.set()
            if self.head:
                connection.sendall(self.head)
            while connection.recv(65536):  # returns b"" when the client closes its end
                pass
        except OSError:
            pass
        self.hung_up.append(time.monotonic())

    def close(self) -> None:
        self.socket.close()
        for connection in self._open:
            connection.close()


CHUNKED_SSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED_NDJSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED_EVENTSTREAM = (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.amazon.eventstream\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n")


def provider_env(provider: str, port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    return {
        "openai": {"MODEL_PROVIDER": "openai", "OPENAI_BASE_URL": f"{url}/v1", "OPENAI_MODEL": "stalls"},
        "ollama": {"MODEL_PROVIDER": "ollama", "OLLAMA_HOST": url, "OLLAMA_MODEL": "stalls"},
        "bedrock": {"MODEL_PROVIDER": "bedrock"},
    }[provider]


@pytest.mark.parametrize(("provider", "head"), [
    ("openai", b""), ("openai", CHUNKED_SSE), ("ollama", b""), ("ollama", CHUNKED_NDJSON),
    ("bedrock", b""), ("bedrock", CHUNKED_EVENTSTREAM),
], ids=["openai-silent", "openai-mid-stream", "ollama-silent", "ollama-mid-stream", "bedrock-silent",
        "bedrock-mid-stream"])
def test_a_stalled_model_server_is_a_503_at_model_timeout_s_and_the_provider_hangs_up(
        provider: str, head: bytes, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = StallingServer(head)
    if provider == "bedrock":  # the real botocore client, pointed at the stand-in (no AWS is reachable)
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", f"http://127.0.0.1:{endpoint.port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    try:
        settings, model = configure_model(Settings.from_env({
            "SESSION_DB": str(tmp_path / "s.db"), "MODEL_TIMEOUT_S": str(MODEL_TIMEOUT_S),
            **provider_env(provider, endpoint.port)}))
        client = serve(Assistant(settings, SQLiteStore(settings.session_db), model))
        status, body, took = timed_post(client, "are you there?")
        assert status == 503 and "MODEL_TIMEOUT_S" in body["error"], body
        assert endpoint.received.is_set(), "the request reached the server"
        # the deadline, plus at most the clean-up's grace: never the provider's own (minutes-long) read timeout
        assert MODEL_TIMEOUT_S * 0.9 <= took < MODEL_TIMEOUT_S + CLEANUP_GRACE_S + 1.5, took
        deadline = time.monotonic() + 5
        while not endpoint.hung_up and time.monotonic() < deadline:
            time.sleep(0.02)
        assert endpoint.hung_up, "the provider's clean-up closed the connection it was reading"
        assert agent.get_assistant().store.list_events("default_user", "conv") == []
    finally:
        endpoint.close()
