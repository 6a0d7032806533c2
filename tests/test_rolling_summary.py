"""The rolling summary at hook level: it moves ahead in batches, so the model never misses a turn."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bedrock_agentcore.runtime.context import RequestContext

from core.settings import Settings
from core.errors import ConfigError
from memory.base import SessionStore, Summary
from models import last_user_text
from models.summarizer import SUMMARY_SYSTEM_PROMPT, Summarizer
from tests.helpers.scripted_model import ScriptedModel, quoted_items
from tests.helpers.session_helpers import FactKeepingModel, chat_calls, run_turn, summary_inputs

SUMMARY_RANGE = re.compile(r"^the assistant's summary of turns 1-(\d+) of this conversation")


def summarised_through(block: str) -> int:
    """The last turn the rolling summary quoted in a chat call's memory block covers (0: none given)."""
    found = [SUMMARY_RANGE.search(item["said_by"]) for item in quoted_items(block)]
    return max((int(f.group(1)) for f in found if f), default=0)


def test_a_fact_from_turn_1_reaches_the_model_at_turn_30_with_k_5(store: SessionStore) -> None:
    model = FactKeepingModel()
    run_turn(store, model, "My name is Ana", k=5, rolling=True)
    for n in range(2, 30):
        run_turn(store, model, f"message {n}", k=5, rolling=True)
    hooks = run_turn(store, model, "What is my name?", k=5, rolling=True)

    last_chat = chat_calls(model)[-1]
    assert "My name is Ana" in model.memory_block(last_chat)
    assert model.system_prompts[last_chat] == "You are a test assistant."  # the summary is not the operator's
    texts = [text for _, text in model.seen_texts(last_chat)]
    assert "My name is Ana" not in texts  # turn 1 is long out of the window: only the summary carries it
    assert texts[0] == "message 25" and texts[-1] == "What is my name?"
    assert hooks.history_length == 5 and hooks.message_count == 30
    # SUMMARY_BATCH defaults to k // 2 = 2: after turn 30 the summary runs one turn into the next window (26-30)
    assert store.get_summary("alice", "s1") == Summary("Facts: My name is Ana", 26)


def test_with_k_5_and_batch_3_the_model_never_misses_a_turn(store: SessionStore) -> None:
    """At every turn the model gets a summary of turns 1..S and the turns after S - 1 verbatim: no gap, ever."""
    model = FactKeepingModel()
    for n in range(1, 31):
        run_turn(store, model, f"my fact{n} is v{n}", k=5, rolling=True, batch=3)
    chats = chat_calls(model)
    assert len(chats) == 30
    for turn, call in enumerate(chats, start=1):
        system = model.memory_block(call)  # where the summary is: quoted ahead of the new message
        assert model.system_prompts[call] == "You are a test assistant."
        verbatim = [int(t.split()[1][4:]) for role, t in model.seen_texts(call) if role == "user"][:-1]
        assert verbatim == list(range(max(1, turn - 5), turn))  # the window: exactly the last k turns
        through = summarised_through(system)
        if turn > 6:  # turns 1..turn-6 are out of the window: the summary must reach the window
            assert through >= verbatim[0] - 1, f"turn {turn}: summary through {through}, window from {verbatim[0]}"
        else:
            assert through == 0
        for earlier in range(1, through + 1):  # and it really carries every turn it claims
            assert f"my fact{earlier} is v{earlier}" in system
        # so every earlier fact is in front of the model, in the summary or as a message
        seen = system + " ".join(t for _, t in model.seen_texts(call))
        assert all(f"my fact{earlier} is v{earlier}" in seen for earlier in range(1, turn))


@pytest.mark.parametrize(("batch", "calls"), [(1, 25), (3, 9), (5, 5)])
def test_a_long_session_pays_one_summary_call_per_batch_of_turns(store: SessionStore, batch: int, calls: int) -> None:
    model = FactKeepingModel()
    for n in range(1, 31):
        run_turn(store, model, f"message {n}", k=5, rolling=True, batch=batch)
    inputs = summary_inputs(model)
    assert len(inputs) == calls == math.ceil((30 - 5) / batch)  # not one call per turn past k (25)
    folded = [int(number) for transcript in inputs for number in re.findall(r"\[turn (\d+)\]", transcript)]
    assert folded == list(range(1, calls * batch + 1))  # each turn folded exactly once, in order
    assert all(len(re.findall(r"\[turn \d+\]", t)) == batch for t in inputs)
    assert store.get_summary("alice", "s1").through_turn == calls * batch  # type: ignore[union-attr]


def test_the_default_batch_is_half_the_window(store: SessionStore) -> None:
    model = FactKeepingModel()
    for n in range(1, 31):
        run_turn(store, model, f"message {n}", k=10, rolling=True)
    assert len(summary_inputs(model)) == 4  # (30 - 10) / 5, where one call per turn would be 20


def test_folds_reuse_the_loaded_window_instead_of_reading_the_store_again(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    extra_reads: list[int] = []
    real_window: Callable[..., Any] = store.load_window
    real_turns: Callable[..., Any] = store.get_last_k_turns

    def counted(actor_id: str, session_id: str, k: int) -> Any:
        reads.append(k)
        return real_window(actor_id, session_id, k)

    def counted_turns(actor_id: str, session_id: str, k: int) -> Any:
        extra_reads.append(k)
        return real_turns(actor_id, session_id, k)

    # a turn reads its window with load_window (and its generation with it); a fold must not read again
    monkeypatch.setattr(store, "load_window", counted)
    monkeypatch.setattr(store, "get_last_k_turns", counted_turns)
    model = FactKeepingModel()
    for n in range(1, 31):
        run_turn(store, model, f"message {n}", k=5, rolling=True, batch=3)
    assert len(summary_inputs(model)) == 9
    assert reads == [5] * 30 and extra_reads == []  # one window read per turn, folds included


def test_a_batch_of_long_turns_is_folded_whole_in_a_bounded_call(store: SessionStore) -> None:
    model = FactKeepingModel()
    for n in range(1, 31):
        run_turn(store, model, f"message {n} " + "x" * 3_000, k=5, rolling=True, batch=5)
    inputs = summary_inputs(model)
    assert len(inputs) == 5
    for transcript in inputs:
        assert transcript.count("[turn ") == 5  # every turn of the batch: messages share the budget
        assert "left out" not in transcript
        assert len(transcript) < 17_000  # each message is clipped; the transcript does not grow
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
    [summary] = model.quoted(last_chat)
    assert summary["said_by"] == ("the assistant's summary of turns 1-2 of this conversation (the most recent of "
                                  "them may also appear above as messages)")
    assert model.system_prompts[last_chat] == "You are a test assistant."
    # the summary goes first in the newest user message, after the whole history
    assert model.calls[last_chat][-1]["content"][0]["text"] == model.memory_block(last_chat)


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


def test_a_failed_batch_fold_is_caught_up_from_the_store_on_the_next_turn(
    store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    model = ScriptedModel(echo=True)
    for n in range(1, 6):
        run_turn(store, model, f"turn {n}", k=5, rolling=True, batch=3)
    model.steps.extend(["reply 6", RuntimeError("summariser down")])
    with caplog.at_level(logging.WARNING):
        assert run_turn(store, model, "turn 6", k=5, rolling=True, batch=3).message_count == 6
    assert store.get_summary("alice", "s1") is None
    assert any("rolling summary not updated after turn 6" in r.getMessage() and "session_id=<s1>" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")

    model.steps.extend(["reply 7", "SUMMARY OF 1-4"])
    run_turn(store, model, "turn 7", k=5, rolling=True, batch=3)  # turn 1 left the loaded window: read again
    retried = summary_inputs(model)[-1]
    assert all(f"[turn {n}]\nUser: turn {n}\n" in retried for n in range(1, 5)) and "User: turn 5" not in retried
    assert store.get_summary("alice", "s1") == Summary("SUMMARY OF 1-4", 4)
    model.steps.append("reply 8")
    run_turn(store, model, "turn 8", k=5, rolling=True, batch=3)  # no gap before turn 9: no call
    assert len(summary_inputs(model)) == 2 and len(store.list_events("alice", "s1")) == 8


def test_without_a_summariser_old_turns_are_simply_out_of_the_window(store: SessionStore) -> None:
    model = ScriptedModel(echo=True)
    for n in range(1, 8):
        run_turn(store, model, f"message {n}", k=2)
    assert summary_inputs(model) == []
    assert store.get_summary("alice", "s1") is None
    assert model.memory_block(-1) == "" and model.system_prompts[-1] == "You are a test assistant."


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
    assert "p1" not in model.memory_block(chat_calls(model)[-1])


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
    assert Settings.from_env({}).rolling_summary is True
    assert Settings.from_env({"ROLLING_SUMMARY": "off"}).rolling_summary is False
    assert Settings.from_env({"ROLLING_SUMMARY": "ON"}).rolling_summary is True
    with pytest.raises(ConfigError, match="ROLLING_SUMMARY"):
        Settings.from_env({"ROLLING_SUMMARY": "sometimes"})


def test_summary_batch_setting() -> None:
    assert Settings.from_env({}).fold_batch == 5  # half of MEMORY_K=10
    assert Settings.from_env({"MEMORY_K": "5"}).fold_batch == 2
    assert Settings.from_env({"MEMORY_K": "1"}).fold_batch == 1
    assert Settings.from_env({"SUMMARY_BATCH": "3"}).fold_batch == 3
    assert Settings.from_env({"MEMORY_K": "4", "SUMMARY_BATCH": "4"}).fold_batch == 4
    for env, error in [({"SUMMARY_BATCH": "0"}, "SUMMARY_BATCH=0 must be >= 1"),
                       ({"SUMMARY_BATCH": "some"}, "SUMMARY_BATCH='some' is not an integer"),
                       ({"SUMMARY_BATCH": "11"}, "SUMMARY_BATCH=11 must be between 1 and MEMORY_K=10"),
                       ({"MEMORY_K": "5", "SUMMARY_BATCH": "6"}, "SUMMARY_BATCH=6 must be between 1 and MEMORY_K=5")]:
        with pytest.raises(ConfigError) as info:
            Settings.from_env(env)
        assert str(info.value) == error


def test_hooks_refuse_a_batch_larger_than_the_window(store: SessionStore) -> None:
    with pytest.raises(ValueError, match="batch=6 must be between 1 and k=5"):
        run_turn(store, ScriptedModel(echo=True), "hello", k=5, rolling=True, batch=6)


class CuttingModel(FactKeepingModel):
    """Every chat reply stops at the token limit (as SmolLM2's did at MAX_TOKENS=128); summaries keep facts."""

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> Any:
        if system_prompt != SUMMARY_SYSTEM_PROMPT:
            self.steps.insert(0, {"text": f"Cut reply to {last_user_text(messages)}", "stop_reason": "max_tokens"})
        async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
            yield event


def test_turns_cut_at_max_tokens_still_move_the_rolling_summary(settings: Settings, store: SessionStore) -> None:
    """A stored turn is a stored turn: a session whose every reply was cut keeps a summary of what left the window."""
    import agent
    from service import Assistant

    model = CuttingModel()
    assistant = Assistant(replace(settings, memory_backend=store.name, memory_k=4, summary_batch=2), store, model)
    agent.set_assistant(assistant)
    try:
        for n in range(1, 17):
            body = agent.chat_handler({"message": f"my fact{n} is v{n}"}, RequestContext(session_id="cut"))
            assert body["truncated"] is True and body["message_count"] == n
            assert assistant.folds.join(10)  # the fold runs after the reply; the scripted model answers in order
    finally:
        agent.set_assistant(None)
    summary = store.get_summary("default_user", "cut")
    assert summary is not None and summary.through_turn >= 16 - 4
    assert all(f"my fact{n} is v{n}" in summary.text for n in range(1, summary.through_turn + 1))
    last_chat = chat_calls(model)[-1]
    seen = model.memory_block(last_chat) + " ".join(t for _, t in model.seen_texts(last_chat))
    assert all(f"my fact{n} is v{n}" in seen for n in range(1, 16))


def test_on_sqlite_a_turn_reads_the_summary_with_its_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default store reads the rolling summary in the window's one query: no second read per turn past k."""
    from memory.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "sessions.db")
    reads: list[str] = []
    real = store.get_summary
    monkeypatch.setattr(store, "get_summary", lambda actor, session: reads.append(session) or real(actor, session))
    model = FactKeepingModel()
    try:
        for n in range(1, 21):
            run_turn(store, model, f"my fact{n} is v{n}", k=5, rolling=True)
        assert "my fact1 is v1" in model.memory_block(chat_calls(model)[-1])  # the summary did reach the model
        assert reads == []
    finally:
        store.close()
