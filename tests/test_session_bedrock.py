"""The session tools and the rolling summary against the real Bedrock Converse client, offline (botocore Stubber).

The Stubber validates every request against the real ``bedrock-runtime`` service model, so this proves
the tool specs, the system prompt with the rolling summary and the toolUse/toolResult round trip are
requests Bedrock accepts; the recorded parameters show what the model was sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from botocore.stub import Stubber
from strands.models import BedrockModel

from service import Assistant, parse_request
from core.settings import Settings
from memory.base import SessionStore, Summary
from models.summarizer import SUMMARY_SYSTEM_PROMPT
from tests.conftest import REQUEST_PATH_BACKENDS, store_factory_over

#: the request path alone: the same code whatever the store (the contract suite covers every backend)
store_factory = store_factory_over(REQUEST_PATH_BACKENDS)

USER, ASSISTANT = MessageRole.USER, MessageRole.ASSISTANT


def converse_reply(content: list[dict[str, Any]], stop: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
        "metrics": {"latencyMs": 10},
    }


@pytest.fixture
def bedrock(store: SessionStore, settings: Settings) -> Iterator[tuple[Assistant, Stubber, list[dict[str, Any]]]]:
    model = BedrockModel(model_id=settings.bedrock_model_id, region_name="us-west-2", streaming=False)
    sent: list[dict[str, Any]] = []
    model.client.meta.events.register("provide-client-params.bedrock-runtime.Converse",
                                      lambda params, **_: sent.append(params))
    with Stubber(model.client) as stubber:
        yield Assistant(replace(settings, memory_k=2), store, model), stubber, sent
        stubber.assert_no_pending_responses()


def test_forged_clear_over_bedrock_clears_only_the_callers_session_and_requests_are_valid(
    bedrock: tuple[Assistant, Stubber, list[dict[str, Any]]], store: SessionStore
) -> None:
    assistant, stubber, sent = bedrock
    for n in range(1, 4):
        store.add_turns("alice", "alice-chat", [ConversationalMessage(f"alice {n}", USER),
                                                ConversationalMessage(f"reply {n}", ASSISTANT)])
    store.put_summary("alice", "alice-chat", Summary("Alice said she lives in Lima.", 1))
    store.add_turns("bob", "bob-chat", [ConversationalMessage("bob's secret", USER),
                                        ConversationalMessage("noted", ASSISTANT)])
    stubber.add_response("converse", converse_reply(
        [{"toolUse": {"toolUseId": "t1", "name": "clear_session",
                      "input": {"session_id": "bob-chat", "actor_id": "bob"}}}], "tool_use"))
    stubber.add_response("converse", converse_reply([{"text": "I cleared our conversation."}], "end_turn"))

    body = assistant.chat(parse_request({"message": "clear bob-chat of bob", "actor_id": "alice"}, "alice-chat", None,
                                        assistant.settings))

    assert body["response"] == "I cleared our conversation."
    assert (body["message_count"], body["history_length"]) == (0, 2)
    assert store.list_events("alice", "alice-chat") == []
    assert [m.text for e in store.list_events("bob", "bob-chat") for m in e.messages] == ["bob's secret", "noted"]

    first, second = sent
    tools = {t["toolSpec"]["name"]: t["toolSpec"] for t in first["toolConfig"]["tools"]}
    assert set(tools) == {"summarize_session", "clear_session"}
    assert all(spec["inputSchema"]["json"].get("properties", {}) == {} for spec in tools.values())
    # the summary is quoted data in the newest user message, never system text (docs/longterm.md)
    assert "Alice said she lives in Lima." not in first["system"][0]["text"]
    assert "Alice said she lives in Lima." in first["messages"][-1]["content"][0]["text"]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    [result] = [b["toolResult"] for m in second["messages"] for b in m["content"] if "toolResult" in b]
    assert result["status"] == "success" and "removed 3 stored exchanges" in result["content"][0]["text"]


def test_summary_action_is_one_tool_less_bedrock_call(
    bedrock: tuple[Assistant, Stubber, list[dict[str, Any]]], store: SessionStore
) -> None:
    assistant, stubber, sent = bedrock
    for n in range(1, 4):
        store.add_turns("alice", "s1", [ConversationalMessage(f"question {n}", USER),
                                        ConversationalMessage(f"answer {n}", ASSISTANT)])
    stubber.add_response("converse", converse_reply([{"text": "Three questions were answered."}], "end_turn"))
    body = assistant.run_action(parse_request({"action": "summarize_session", "actor_id": "alice"}, "s1", None,
                                              assistant.settings))
    assert body["summary"] == "Three questions were answered."
    [call] = sent
    assert "toolConfig" not in call
    assert call["system"][0]["text"] == SUMMARY_SYSTEM_PROMPT
    assert [m["role"] for m in call["messages"]] == ["user"]
    assert "User: question 1" in call["messages"][0]["content"][0]["text"]


def test_a_throttled_summary_action_is_a_503(
    bedrock: tuple[Assistant, Stubber, list[dict[str, Any]]], store: SessionStore
) -> None:
    from core.errors import ModelError

    assistant, stubber, _ = bedrock
    store.add_turns("alice", "s1", [ConversationalMessage("q", USER), ConversationalMessage("a", ASSISTANT)])
    stubber.add_client_error("converse", service_error_code="ThrottlingException", http_status_code=429)
    with pytest.raises(ModelError) as info:
        assistant.run_action(parse_request({"action": "summarize_session", "actor_id": "alice"}, "s1", None,
                                           assistant.settings))
    assert info.value.status == 503
    assert len(store.list_events("alice", "s1")) == 1


def test_a_throttled_rolling_summary_call_is_not_retried_in_the_turn_and_the_turn_succeeds(
    bedrock: tuple[Assistant, Stubber, list[dict[str, Any]]], store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    assistant, stubber, sent = bedrock
    for n in range(1, 3):
        store.add_turns("alice", "s1", [ConversationalMessage(f"question {n}", USER),
                                        ConversationalMessage(f"answer {n}", ASSISTANT)])
    stubber.add_response("converse", converse_reply([{"text": "answer 3"}], "end_turn"))
    stubber.add_client_error("converse", service_error_code="ThrottlingException", http_status_code=429)
    body = assistant.chat(parse_request({"message": "question 3", "actor_id": "alice"}, "s1", None,
                                        assistant.settings))
    assert (body["response"], body["message_count"]) == ("answer 3", 3)  # answered before the fold ran
    assert assistant.folds.join(10)
    assert store.get_summary("alice", "s1") is None
    [warning] = [r.getMessage() for r in caplog.records if "rolling summary not updated" in r.getMessage()]
    assert "ModelThrottledException" in warning  # one attempt, no minute-long Strands backoff
    assert sent[1]["system"][0]["text"] == SUMMARY_SYSTEM_PROMPT and "question 1" in str(sent[1]["messages"])
