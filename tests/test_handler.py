"""The entrypoint called directly, as the seed's tests do: ``chat_handler(payload, context)``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from bedrock_agentcore.runtime.context import BedrockAgentCoreContext, RequestContext
from starlette.responses import JSONResponse

from agent import chat_handler
from service import Assistant
from tests.helpers.scripted_model import ScriptedModel
from tests.conftest import REQUEST_PATH_BACKENDS, store_factory_over

#: the request path alone: the same code whatever the store (the contract suite covers every backend)
store_factory = store_factory_over(REQUEST_PATH_BACKENDS)

ACTOR_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Actor-Id"


def ctx(session_id: str | None = None, **headers: str) -> RequestContext:
    return RequestContext(session_id=session_id, request_headers=headers or None)


def error_of(response: object) -> tuple[int, str]:
    assert isinstance(response, JSONResponse), f"expected an error response, got {response!r}"
    import json

    return response.status_code, json.loads(response.body)["error"]


def test_session_persistence(assistant: Assistant) -> None:
    """The seed's test: the second message of a session counts 2."""
    session_id = "test-session-001"
    response1 = chat_handler({"message": "Hello"}, ctx(session_id))
    assert response1["message_count"] == 1
    response2 = chat_handler({"message": "World"}, ctx(session_id))
    assert response2["message_count"] == 2
    assert response2["history_length"] == 1


def test_session_isolation(assistant: Assistant) -> None:
    """The seed's test: two sessions each start at 1."""
    response1 = chat_handler({"message": "Hello"}, ctx("session-a"))
    response2 = chat_handler({"message": "Hello"}, ctx("session-b"))
    assert response1["message_count"] == 1
    assert response2["message_count"] == 1


def test_response_has_every_field(assistant: Assistant) -> None:
    response = chat_handler({"message": "Hello"}, ctx("conv1"))
    assert response == {
        "response": "You said 'Hello'",
        "session_id": "conv1",
        "actor_id": "default_user",
        "message_count": 1,
        "history_length": 0,
    }


def test_model_sees_the_first_exchange_on_the_second_call(assistant: Assistant, model: ScriptedModel) -> None:
    chat_handler({"message": "My name is Ana"}, ctx("conv1"))
    chat_handler({"message": "Who am I?"}, ctx("conv1"))
    assert model.seen_texts() == [
        ("user", "My name is Ana"), ("assistant", "You said 'My name is Ana'"), ("user", "Who am I?"),
    ]
    chat_handler({"message": "Who am I?"}, ctx("conv2"))
    assert model.seen_texts() == [("user", "Who am I?")]


def test_missing_session_id_uses_default(assistant: Assistant) -> None:
    assert chat_handler({"message": "Hello"}, ctx())["session_id"] == "default"
    assert chat_handler({"message": "Hello"}, ctx())["message_count"] == 2


def test_actor_from_payload_then_header_then_default(assistant: Assistant) -> None:
    assert chat_handler({"message": "hi", "actor_id": "alice"}, ctx("s"))["actor_id"] == "alice"
    assert chat_handler({"message": "hi", "actor_id": "alice"}, ctx("s", **{ACTOR_HEADER: "alice"}))["actor_id"] == "alice"
    # one request names one actor: a payload and a header that differ are refused, as for sessions
    status, error = error_of(chat_handler({"message": "hi", "actor_id": "alice"}, ctx("s", **{ACTOR_HEADER: "bob"})))
    assert status == 400 and "actor" in error
    assert chat_handler({"message": "hi"}, ctx("s", **{ACTOR_HEADER.lower(): "bob"}))["actor_id"] == "bob"
    assert chat_handler({"message": "hi"}, ctx("s"))["actor_id"] == "default_user"


def test_same_session_under_two_actors_is_two_conversations(assistant: Assistant, model: ScriptedModel) -> None:
    chat_handler({"message": "alice's secret", "actor_id": "alice"}, ctx("shared"))
    bob = chat_handler({"message": "hello", "actor_id": "bob"}, ctx("shared"))
    assert bob["message_count"] == 1 and bob["history_length"] == 0
    assert model.seen_texts() == [("user", "hello")]


def test_prompt_is_accepted_as_message(assistant: Assistant) -> None:
    assert chat_handler({"prompt": "Hello"}, ctx("c"))["response"] == "You said 'Hello'"
    assert chat_handler({"prompt": "Hi", "message": "Hi"}, ctx("c"))["message_count"] == 2


@pytest.mark.parametrize(
    ("payload", "session_id", "needle"),
    [
        ([1, 2], "ok", "JSON object"),
        ("Hello", "ok", "JSON object"),
        (None, "ok", "JSON object"),
        ({}, "ok", "'message' is required"),
        ({"message": ""}, "ok", "must not be empty"),
        ({"message": "   \n"}, "ok", "must not be empty"),
        ({"message": 42}, "ok", "must be a string"),
        ({"message": ["a"]}, "ok", "must be a string"),
        ({"message": "x" * 32_001}, "ok", "MAX_MESSAGE_CHARS"),
        ({"message": "a", "prompt": "b"}, "ok", "'prompt'"),
        ({"message": "hi"}, "a:b", "session id"),
        ({"message": "hi"}, "../etc", "session id"),
        ({"message": "hi"}, "_leading", "session id"),
        ({"message": "hi"}, "x" * 101, "limit is 100"),
        ({"message": "hi"}, "nul\x00byte", "session id"),
        ({"message": "hi", "actor_id": "a:b"}, "ok", "actor_id"),
        ({"message": "hi", "actor_id": ""}, "ok", "actor_id"),
        ({"message": "hi", "actor_id": 7}, "ok", "actor_id"),
        ({"message": "hi", "actor_id": "a" * 256}, "ok", "limit is 255"),
        ({"message": "hi", "actor_id": "alice/../bob"}, "ok", "actor_id"),
    ],
)
def test_bad_input_is_a_400_that_says_what_is_wrong_and_stores_nothing(
    assistant: Assistant, payload: object, session_id: str, needle: str
) -> None:
    chat_handler({"message": "keep me"}, ctx("ok"))
    before = assistant.store.list_events("default_user", "ok")
    status, error = error_of(chat_handler(payload, ctx(session_id)))
    assert status == 400
    assert needle in error
    assert assistant.store.list_events("default_user", "ok") == before
    assert chat_handler({"message": "still here"}, ctx("ok"))["message_count"] == 2


def test_model_failure_is_a_json_error_and_the_session_stays_usable(assistant: Assistant,
                                                                     model: ScriptedModel) -> None:
    chat_handler({"message": "first"}, ctx("c"))
    model.steps.append(RuntimeError("upstream broke"))
    status, error = error_of(chat_handler({"message": "second"}, ctx("c")))
    assert status == 502
    assert "upstream broke" in error
    third = chat_handler({"message": "third"}, ctx("c"))
    assert third["message_count"] == 2
    assert model.seen_texts()[:2] == [("user", "first"), ("assistant", "You said 'first'")]


def test_a_reply_cut_at_max_tokens_is_returned_flagged_and_stored(assistant: Assistant, model: ScriptedModel) -> None:
    model.steps.append({"text": "Once upon a", "stop_reason": "max_tokens"})
    first = chat_handler({"message": "Tell me a story"}, ctx("c"))
    assert first == {"response": "Once upon a", "session_id": "c", "actor_id": "default_user",
                     "message_count": 1, "history_length": 0, "truncated": True}
    second = chat_handler({"message": "Go on"}, ctx("c"))
    assert "truncated" not in second and second["message_count"] == 2
    assert model.seen_texts() == [("user", "Tell me a story"), ("assistant", "Once upon a"), ("user", "Go on")]


def test_max_tokens_before_any_text_is_a_502_and_stores_nothing(assistant: Assistant, model: ScriptedModel) -> None:
    model.steps.append({"text": "", "stop_reason": "max_tokens"})
    status, error = error_of(chat_handler({"message": "Hello"}, ctx("c")))
    assert status == 502 and "MAX_TOKENS" in error
    assert assistant.store.list_events("default_user", "c") == []


class ThreadRecordingModel(ScriptedModel):
    """Echoes, noting the thread each model call ran on and the request id it could see."""

    def __init__(self) -> None:
        super().__init__(echo=True)
        self.threads: list[int] = []
        self.request_ids: list[str | None] = []

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> Any:
        self.threads.append(threading.get_ident())
        self.request_ids.append(BedrockAgentCoreContext.get_request_id())
        async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
            yield event


def test_a_turn_runs_on_the_handlers_thread_with_its_request_context(assistant: Assistant) -> None:
    """No thread per turn: the runtime's worker thread runs the agent itself (Strands' agent() starts one)."""
    model = ThreadRecordingModel()
    recording = Assistant(assistant.settings, assistant.store, model)
    results: dict[str, Any] = {}

    def handler_thread() -> None:
        BedrockAgentCoreContext.set_request_context("req-1")
        results["thread"] = threading.get_ident()
        results["body"] = recording.handle({"message": "hello"}, ctx("conv1"))

    worker = threading.Thread(target=handler_thread)
    worker.start()
    worker.join(30)
    assert results["body"]["response"] == "You said 'hello'" and results["body"]["message_count"] == 1
    assert model.threads == [results["thread"]]
    assert model.request_ids == ["req-1"]


def test_a_turn_called_inside_a_running_event_loop_still_works(assistant: Assistant) -> None:
    async def inside_a_loop() -> Any:
        return assistant.handle({"message": "from async code"}, ctx("conv1"))

    body = asyncio.run(inside_a_loop())
    assert body["response"] == "You said 'from async code'" and body["message_count"] == 1
    assert assistant.handle({"message": "again"}, ctx("conv1"))["history_length"] == 1
