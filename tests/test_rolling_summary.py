"""The rolling summary at hook level: turns that leave the k-turn window are folded into a stored summary."""

from __future__ import annotations

import logging

import pytest

from memory.base import SessionStore, Summary
from summary import Summarizer
from tests.scripted_model import ScriptedModel
from tests.session_helpers import FactKeepingModel, chat_calls, run_turn, summary_inputs


def test_a_fact_from_turn_1_reaches_the_model_at_turn_30_with_k_5(store: SessionStore) -> None:
    model = FactKeepingModel()
    run_turn(store, model, "My name is Ana", k=5, rolling=True)
    for n in range(2, 30):
        run_turn(store, model, f"message {n}", k=5, rolling=True)
    hooks = run_turn(store, model, "What is my name?", k=5, rolling=True)

    last_chat = chat_calls(model)[-1]
    assert "My name is Ana" in model.system_prompts[last_chat]
    texts = [text for _, text in model.seen_texts(last_chat)]
    assert "My name is Ana" not in texts  # turn 1 is long out of the window: only the summary carries it
    assert texts[0] == "message 25" and texts[-1] == "What is my name?"
    assert hooks.history_length == 5 and hooks.message_count == 30
    assert store.get_summary("alice", "s1") == Summary("Facts: My name is Ana", 25)


def test_each_turn_leaving_the_window_is_folded_once_in_a_bounded_call(store: SessionStore) -> None:
    model = FactKeepingModel()
    for n in range(1, 31):
        run_turn(store, model, f"message {n} " + "x" * 3_000, k=5, rolling=True)
    inputs = summary_inputs(model)
    assert len(inputs) == 25  # turns 1..25 left the window, one fold each; turns 1..5 cost nothing
    for number, transcript in enumerate(inputs, start=1):
        assert transcript.count("[turn ") == 1
        assert f"[turn {number}]" in transcript
    assert max(len(t) for t in inputs) < 10_000  # messages are clipped; the transcript does not grow


def test_a_short_session_never_calls_the_summariser(store: SessionStore) -> None:
    model = ScriptedModel(echo=True)
    for n in range(1, 6):
        run_turn(store, model, f"message {n}", k=5, rolling=True)
    assert summary_inputs(model) == []
    assert store.get_summary("alice", "s1") is None


def test_the_history_still_starts_with_user_and_alternates(store: SessionStore) -> None:
    model = FactKeepingModel()
    for n in range(1, 6):
        run_turn(store, model, f"my color is c{n}", k=2, rolling=True)
    last_chat = chat_calls(model)[-1]
    assert [m["role"] for m in model.calls[last_chat]] == ["user", "assistant", "user", "assistant", "user"]
    assert "Summary of the earlier part of this conversation (turns 1-2" in model.system_prompts[last_chat]
    assert model.system_prompts[last_chat].startswith("You are a test assistant.")


def test_a_failing_summariser_keeps_the_turn_and_the_next_turn_catches_up(
    store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    model = ScriptedModel(echo=True)
    run_turn(store, model, "turn one", k=2, rolling=True)
    run_turn(store, model, "turn two", k=2, rolling=True)
    model.steps.extend(["reply three", RuntimeError("summariser down")])
    with caplog.at_level(logging.WARNING):
        hooks = run_turn(store, model, "turn three", k=2, rolling=True)
    assert hooks.message_count == 3
    assert store.get_summary("alice", "s1") is None
    [warning] = [r for r in caplog.records if "rolling summary not updated" in r.getMessage()]
    assert warning.levelname == "WARNING" and "session_id=<s1>" in warning.getMessage()

    model.steps.extend(["reply four", "turns one and two were about numbers"])
    run_turn(store, model, "turn four", k=2, rolling=True)
    retried = summary_inputs(model)[-1]
    assert "User: turn one" in retried and "User: turn two" in retried
    assert store.get_summary("alice", "s1") == Summary("turns one and two were about numbers", 2)
    assert len(store.list_events("alice", "s1")) == 4


def test_the_previous_summary_is_folded_forward(store: SessionStore) -> None:
    model = ScriptedModel(echo=True)
    for n in range(1, 4):
        run_turn(store, model, f"turn {n}", k=2, rolling=True)  # folds turn 1 (echoed summary)
    model.steps.extend(["reply 4", "SUMMARY OF 1-2"])
    run_turn(store, model, "turn 4", k=2, rolling=True)
    model.steps.extend(["reply 5"])
    run_turn(store, model, "turn 5", k=2, rolling=True)  # folds turn 3 into "SUMMARY OF 1-2"
    transcript = summary_inputs(model)[-1]
    assert "Summary of turns 1-2:\nSUMMARY OF 1-2" in transcript
    assert "User: turn 3" in transcript and "User: turn 2" not in transcript


def test_without_a_summariser_old_turns_are_simply_out_of_the_window(store: SessionStore) -> None:
    model = ScriptedModel(echo=True)
    for n in range(1, 8):
        run_turn(store, model, f"message {n}", k=2)
    assert summary_inputs(model) == []
    assert store.get_summary("alice", "s1") is None
    assert "Summary of the earlier part" not in (model.system_prompts[-1] or "")


def test_clearing_the_session_drops_its_rolling_summary(store: SessionStore) -> None:
    model = FactKeepingModel()
    for n in range(1, 5):
        run_turn(store, model, f"my pet is p{n}", k=2, rolling=True)
    assert store.get_summary("alice", "s1") is not None
    model.steps.extend([{"tool": "clear_session"}, "Cleared."])
    run_turn(store, model, "start over", k=2, rolling=True)
    assert store.get_summary("alice", "s1") is None
    for n in range(1, 4):
        run_turn(store, model, f"fresh {n}", k=2, rolling=True)
    assert "p1" not in model.system_prompts[chat_calls(model)[-1]]


def test_the_stored_summary_stays_bounded_with_a_model_that_echoes_everything(store: SessionStore) -> None:
    model = ScriptedModel(echo=True)  # as MODEL_PROVIDER=echo: the "summary" repeats its whole input
    summarizer = Summarizer(model, summary_chars=800)
    for n in range(1, 25):
        run_turn(store, model, f"message {n} " + "q" * 500, k=3, rolling=True, summarizer=summarizer)
    summary = store.get_summary("alice", "s1")
    assert summary is not None and summary.through_turn == 21
    assert len(summary.text) <= 800
    assert max(len(t) for t in summary_inputs(model)) < 800 + 2 * 2_000 + 300


def test_rolling_summary_setting() -> None:
    from config import Settings
    from errors import ConfigError

    assert Settings.from_env({}).rolling_summary is True
    assert Settings.from_env({"ROLLING_SUMMARY": "off"}).rolling_summary is False
    assert Settings.from_env({"ROLLING_SUMMARY": "ON"}).rolling_summary is True
    with pytest.raises(ConfigError, match="ROLLING_SUMMARY"):
        Settings.from_env({"ROLLING_SUMMARY": "sometimes"})
