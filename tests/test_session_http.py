"""Session tools, payload actions and the rolling summary through POST /invocations (Starlette TestClient)."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from starlette.testclient import TestClient

import agent
from service import Assistant, parse_request
from models.summarizer import EMPTY_SESSION_SUMMARY
from tests.conftest import ACTOR_HEADER
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.session_helpers import chat_calls, result_text, summary_inputs, summary_quote, tool_results
from tests.test_rolling_summary import summarised_through
from tests.test_http import invoke as post


def invoke(client: TestClient, body: object, session: str | None = None, **headers: str) -> Any:
    """POST /invocations; the turn's rolling-summary fold (made after the reply, in the background) has ended."""
    response = post(client, body, session, **headers)
    assert agent.get_assistant().folds.join(10)
    return response


def stored(assistant: Assistant, actor: str, session: str) -> list[str]:
    return [m.text for e in assistant.store.list_events(actor, session) for m in e.messages]


# -- actions (no model in the loop) ------------------------------------------------------------

def test_summarize_action_summarises_every_stored_turn(client: TestClient, assistant: Assistant,
                                                      model: ScriptedModel) -> None:
    assistant.settings = replace(assistant.settings, memory_k=2)
    for n in range(1, 5):
        invoke(client, {"message": f"note {n}"}, "conv1")
    model.steps.append("You wrote four notes.")
    response = invoke(client, {"action": "summarize_session"}, "conv1")
    assert response.status_code == 200
    assert response.json() == {
        "action": "summarize_session", "summary": "You wrote four notes.",
        "session_id": "conv1", "actor_id": "default_user",
    }
    [transcript] = [t for t in summary_inputs(model) if "Summarise this conversation" in t]
    assert all(f"User: note {n}" in transcript for n in range(1, 5))
    assert len(assistant.store.list_events("default_user", "conv1")) == 4  # a summary stores no turn


def test_clear_action_deletes_the_session_and_the_next_message_starts_at_one(
    client: TestClient, assistant: Assistant, model: ScriptedModel
) -> None:
    for n in range(1, 4):
        invoke(client, {"message": f"hello {n}"}, "conv1")
    calls = len(model.calls)
    cleared = invoke(client, {"action": "clear_session"}, "conv1")
    assert cleared.status_code == 200
    assert cleared.json() == {"action": "clear_session", "deleted": 3, "session_id": "conv1",
                              "actor_id": "default_user"}
    assert len(model.calls) == calls  # no model call
    after = invoke(client, {"message": "fresh start"}, "conv1").json()
    assert (after["message_count"], after["history_length"]) == (1, 0)
    assert model.seen_texts() == [("user", "fresh start")]


def test_actions_on_an_empty_session(client: TestClient, model: ScriptedModel) -> None:
    summary = invoke(client, {"action": "summarize_session"}, "nothing-here").json()
    assert summary["summary"] == EMPTY_SESSION_SUMMARY
    assert invoke(client, {"action": "clear_session"}, "nothing-here").json()["deleted"] == 0
    assert model.calls == []


def test_actions_only_reach_the_callers_session(client: TestClient, assistant: Assistant) -> None:
    invoke(client, {"message": "alice's note"}, "shared", **{ACTOR_HEADER: "alice"})
    invoke(client, {"message": "bob's note"}, "shared", **{ACTOR_HEADER: "bob"})
    response = invoke(client, {"action": "clear_session", "actor_id": "bob"}, "shared")
    assert response.json()["deleted"] == 1 and response.json()["actor_id"] == "bob"
    assert stored(assistant, "alice", "shared") == ["alice's note", "You said 'alice's note'"]
    assert stored(assistant, "bob", "shared") == []


def test_unknown_or_malformed_action_is_a_400_and_changes_nothing(client: TestClient, assistant: Assistant) -> None:
    invoke(client, {"message": "keep me"}, "conv1")
    for action in ("delete_everything", "", 7, ["clear_session"]):
        response = invoke(client, {"action": action}, "conv1")
        assert response.status_code == 400
        assert "unknown action" in response.json()["error"]
    assert invoke(client, {"action": "clear_session"}, "bad:id").status_code == 400
    assert stored(assistant, "default_user", "conv1") == ["keep me", "You said 'keep me'"]


def test_a_failed_summary_action_is_a_502_and_loses_nothing(client: TestClient, assistant: Assistant,
                                                           model: ScriptedModel) -> None:
    invoke(client, {"message": "important"}, "conv1")
    model.steps.append(RuntimeError("summary model down"))
    response = invoke(client, {"action": "summarize_session"}, "conv1")
    assert response.status_code == 502
    assert "summary model down" in response.json()["error"]
    assert stored(assistant, "default_user", "conv1") == ["important", "You said 'important'"]
    assert invoke(client, {"message": "still works"}, "conv1").json()["message_count"] == 2


# -- the tools, called by the model --------------------------------------------------------------

def test_clear_session_tool_with_forged_ids_clears_only_the_callers_session(
    client: TestClient, assistant: Assistant, model: ScriptedModel
) -> None:
    invoke(client, {"message": "bob's secret"}, "bob-chat", **{ACTOR_HEADER: "bob"})
    invoke(client, {"message": "alice one"}, "alice-chat", **{ACTOR_HEADER: "alice"})
    invoke(client, {"message": "alice two"}, "alice-chat", **{ACTOR_HEADER: "alice"})
    model.steps.extend([
        {"tool": "clear_session", "input": {"session_id": "bob-chat", "actor_id": "bob"}},
        "I cleared our conversation.",
    ])
    response = invoke(client, {"message": "clear session bob-chat for actor bob"}, "alice-chat",
                      **{ACTOR_HEADER: "alice"})
    assert response.status_code == 200
    assert response.json() == {
        "response": "I cleared our conversation.", "session_id": "alice-chat", "actor_id": "alice",
        "message_count": 0, "history_length": 2,
    }
    assert "removed 2 stored exchanges" in result_text(tool_results(model)[0])
    assert stored(assistant, "alice", "alice-chat") == []
    assert stored(assistant, "bob", "bob-chat") == ["bob's secret", "You said 'bob's secret'"]
    after = invoke(client, {"message": "hi"}, "alice-chat", **{ACTOR_HEADER: "alice"}).json()
    assert (after["message_count"], after["history_length"]) == (1, 0)


def test_summarize_session_tool_answers_from_the_callers_session(client: TestClient, assistant: Assistant,
                                                                 model: ScriptedModel) -> None:
    invoke(client, {"message": "bob's pin is 9876"}, "chat", **{ACTOR_HEADER: "bob"})
    invoke(client, {"message": "I am planning a trip to Oslo"}, "chat", **{ACTOR_HEADER: "alice"})
    model.steps.extend([
        {"tool": "summarize_session", "input": {"actor_id": "bob"}},
        "You are planning a trip to Oslo.",
        "Summary: you are planning a trip to Oslo.",
    ])
    body = invoke(client, {"message": "summarise bob's chat"}, "chat", **{ACTOR_HEADER: "alice"}).json()
    assert body["response"] == "Summary: you are planning a trip to Oslo."
    assert body["message_count"] == 2
    [transcript] = summary_inputs(model)
    assert "Oslo" in transcript and "9876" not in transcript
    assert summary_quote(tool_results(model)[0]) == "You are planning a trip to Oslo."


def test_every_agent_is_given_the_session_tools(client: TestClient, assistant: Assistant) -> None:
    from memory.turn import TurnState

    agent, _ = assistant.pipeline.build_agent(TurnState("alice", "s1"))
    assert {"summarize_session", "clear_session"} <= set(agent.tool_names)


# -- the rolling summary over HTTP ---------------------------------------------------------------

def test_rolling_summary_reaches_the_model_over_http(client: TestClient, assistant: Assistant,
                                                     model: ScriptedModel) -> None:
    assistant.settings = replace(assistant.settings, memory_k=2)
    invoke(client, {"message": "my city is Lima"}, "conv1")
    for n in range(2, 6):
        invoke(client, {"message": f"filler {n}"}, "conv1")
    last = invoke(client, {"message": "where do I live?"}, "conv1").json()
    assert (last["message_count"], last["history_length"]) == (6, 2)
    system = model.memory_block(chat_calls(model)[-1])  # the summary: quoted ahead of the new message
    # folded one turn early, after each reply: for the request after next (window: the newest 2 turns)
    assert summarised_through(system) == 4
    assert "my city is Lima" in system  # the echo-like scripted summariser repeats its input
    assert assistant.store.get_summary("default_user", "conv1").through_turn == 5


def test_summary_batch_over_http_one_summary_call_per_batch_and_no_gap(client: TestClient, assistant: Assistant,
                                                                      model: ScriptedModel) -> None:
    assistant.settings = replace(assistant.settings, memory_k=4, summary_batch=3)
    invoke(client, {"message": "my city is Lima"}, "conv1")
    for n in range(2, 14):
        body = invoke(client, {"message": f"filler {n}"}, "conv1").json()
        assert body["history_length"] == min(n - 1, 4)
        system = model.memory_block(chat_calls(model)[-1])
        if n > 5:  # turn 1 is out of the window: the summary carries it, and reaches the window
            through = summarised_through(system)
            assert "my city is Lima" in system and through >= n - 5
    # after turns 4, 7, 10 and 13 (one turn early, for the request after next): 4 calls, not 10
    assert len(summary_inputs(model)) == 4
    assert assistant.store.get_summary("default_user", "conv1").through_turn == 12


def test_rolling_summary_off_makes_no_summary_calls(client: TestClient, assistant: Assistant,
                                                    model: ScriptedModel) -> None:
    assistant.settings = replace(assistant.settings, memory_k=2, rolling_summary=False)
    for n in range(1, 7):
        assert invoke(client, {"message": f"message {n}"}, "conv1").status_code == 200
    assert summary_inputs(model) == []
    assert len(model.calls) == 6
    assert assistant.store.get_summary("default_user", "conv1") is None


class BlockingModel(ScriptedModel):
    """Echoes, but the first call waits until the test releases it (a turn caught mid-answer)."""

    def __init__(self) -> None:
        super().__init__(echo=True)
        self.entered = threading.Event()
        self.release = threading.Event()

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> Any:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(30)
        async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
            yield event


def test_a_clear_action_waits_for_the_turn_in_progress_in_that_session(assistant: Assistant) -> None:
    blocking = Assistant(assistant.settings, assistant.store, BlockingModel())
    model = blocking.model
    assert isinstance(model, BlockingModel)
    results: dict[str, Any] = {}
    turn = threading.Thread(target=lambda: results.update(
        turn=blocking.chat(parse_request({"message": "in flight"}, "conv1", None, blocking.settings))))
    clear = threading.Thread(target=lambda: results.update(
        clear=blocking.run_action(parse_request({"action": "clear_session"}, "conv1", None, blocking.settings))))
    turn.start()
    try:
        assert model.entered.wait(30)
        clear.start()
        clear.join(0.2)
        assert clear.is_alive()  # held by the session lock while the turn is being answered
    finally:
        model.release.set()
    turn.join(30)
    clear.join(30)
    assert results["turn"]["message_count"] == 1
    assert results["clear"]["deleted"] == 1  # the clear ran after the turn was stored, and removed it
    assert blocking.store.list_events("default_user", "conv1") == []


def test_a_summary_cut_at_its_token_cap_is_kept_and_marked_not_a_502(client: TestClient, assistant: Assistant,
                                                                     model: ScriptedModel) -> None:
    for n in range(1, 4):
        invoke(client, {"message": f"note {n}"}, "conv1")
    model.steps.append({"text": "You wrote three notes about", "stop_reason": "max_tokens"})
    response = invoke(client, {"action": "summarize_session"}, "conv1")
    assert response.status_code == 200, response.text
    assert response.json()["summary"] == "You wrote three notes about…"
    assert "continue" not in response.text and "max_tokens" not in response.text  # none of Strands' wording


def test_a_summary_cut_before_any_text_is_an_error_without_strands_wording(client: TestClient,
                                                                          model: ScriptedModel) -> None:
    invoke(client, {"message": "note 1"}, "conv1")
    model.steps.append({"text": "", "stop_reason": "max_tokens"})
    response = invoke(client, {"action": "summarize_session"}, "conv1")
    assert response.status_code == 502
    assert "empty summary" in response.json()["error"] and "continue" not in response.text
