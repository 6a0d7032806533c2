"""``MEMORY_MAX_TOKENS``: the history in front of the model is bounded in tokens, not only in turns.

Long replies push the oldest turns of the window out early; the rolling summary covers them,
so the model still never misses a turn. Defaults are sized to the model's context.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from agent import chat_handler
from core.errors import ConfigError
from core.settings import LOCAL_PROMPT_RESERVE, Settings
from hooks.memory import turn_tokens
from memory.base import SessionStore
from models.base import estimate_tokens
from service import Assistant
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.session_helpers import FactKeepingModel, chat_calls, run_turn
from tests.test_handler import ctx
from tests.test_rolling_summary import summarised_through

PADDING = " and more words to make this a long message" * 10  # ~440 characters: ~125 estimated tokens


def test_the_window_keeps_only_the_newest_whole_turns_that_fit_memory_max_tokens(store: SessionStore) -> None:
    model = ScriptedModel(echo=True)
    for n in range(1, 5):
        run_turn(store, model, f"message {n}{PADDING}", k=10)
    turn = turn_tokens(store.get_last_k_turns("alice", "s1", 1)[0])
    hooks = run_turn(store, model, "message 5", k=10, max_tokens=2 * turn + turn // 2)

    users = [text for role, text in model.seen_texts() if role == "user"]
    assert [u.split(" and")[0] for u in users] == ["message 3", "message 4", "message 5"]
    assert hooks.history_length == 2 and hooks.dropped_for_budget == 2
    assert [m["role"] for m in model.last_messages] == ["user", "assistant", "user", "assistant", "user"]


def test_a_turn_larger_than_the_whole_budget_is_left_out_rather_than_overflowing(store: SessionStore) -> None:
    model = ScriptedModel(echo=True)
    run_turn(store, model, "huge" + PADDING * 20, k=10)
    hooks = run_turn(store, model, "next", k=10, max_tokens=200)
    assert hooks.history_length == 0
    assert model.seen_texts() == [("user", "next")]


def test_with_a_tight_token_budget_and_long_replies_the_model_never_misses_a_turn(store: SessionStore) -> None:
    """Every chat call: a summary of turns 1..S and verbatim turns from at most S+1 on, whatever the budget left out."""
    model = FactKeepingModel()
    budget = 700  # about 2 of these turns (the echo model's reply repeats the long message)
    for n in range(1, 26):
        run_turn(store, model, f"my fact{n} is v{n}{PADDING}", k=10, rolling=True, batch=3, max_tokens=budget)
    for turn, call in enumerate(chat_calls(model), start=1):
        system = model.memory_block(call)  # the summary, quoted ahead of the new message
        users = [t for role, t in model.seen_texts(call) if role == "user"][:-1]
        verbatim = [int(re.match(r"my fact(\d+)", t).group(1)) for t in users]  # type: ignore[union-attr]
        assert sum(estimate_tokens(t) for _, t in model.seen_texts(call)[:-1]) <= budget
        assert verbatim == list(range(turn - len(verbatim), turn))  # the newest turns, contiguous
        if verbatim and verbatim[0] > 1 or turn > 1 and not verbatim:
            first_shown = verbatim[0] if verbatim else turn
            assert summarised_through(system) >= first_shown - 1, f"turn {turn}: a gap before turn {first_shown}"
        seen = (system or "") + " ".join(t for _, t in model.seen_texts(call))
        missing = [n for n in range(1, turn) if f"my fact{n} is v{n}" not in seen]
        assert missing == [], f"turn {turn}: the model never saw facts {missing}"
    assert len(chat_calls(model)) == 25


def test_the_assistant_bounds_each_turns_history_by_memory_max_tokens(
        settings: Settings, store: SessionStore, model: ScriptedModel) -> None:
    import agent

    budget = 3 * estimate_tokens("x" * 600)
    assistant = Assistant(replace(settings, memory_backend=store.name, memory_max_tokens=budget), store, model)
    agent.set_assistant(assistant)
    try:
        for n in range(1, 7):
            body = chat_handler({"message": f"{n} " + "x" * 600}, ctx("long"))
        # each turn is the message and its echo: ~2 x 160 tokens, so one turn fits, not two
        assert (body["message_count"], body["history_length"]) == (6, 1)
    finally:
        agent.set_assistant(None)


# -- defaults sized to the model -----------------------------------------------------------------

def test_local_defaults_size_the_history_to_a_slot_after_the_reply_and_the_summary() -> None:
    local = Settings.from_env({}).for_provider("local")
    assert (local.max_tokens, local.summary_max_tokens, local.model_timeout_s) == (160, 160, 60.0)
    assert local.memory_max_tokens == 2048 - 160 - 160 - LOCAL_PROMPT_RESERVE
    assert local.fold_batch == local.memory_k == 10  # a summary call costs a whole reply: as few as the budget allows
    bigger = Settings.from_env({"LOCAL_MODEL_CONTEXT": "4096", "MAX_TOKENS": "256"}).for_provider("local")
    assert bigger.memory_max_tokens == 4096 - 256 - 160 - LOCAL_PROMPT_RESERVE
    assert Settings.from_env({"MEMORY_MAX_TOKENS": "500"}).for_provider("local").memory_max_tokens == 500


def test_bedrock_defaults_are_generous_and_explicit_values_win() -> None:
    bedrock = Settings.from_env({}).for_provider("bedrock")
    assert (bedrock.max_tokens, bedrock.memory_max_tokens, bedrock.model_timeout_s) == (512, 32_000, 120.0)
    explicit = Settings.from_env({"MAX_TOKENS": "300", "MODEL_TIMEOUT_S": "9.5", "SUMMARY_MAX_TOKENS": "64"})
    assert (explicit.for_provider("bedrock").max_tokens, explicit.for_provider("bedrock").model_timeout_s,
            explicit.for_provider("bedrock").summary_max_tokens) == (300, 9.5, 64)


def test_a_local_context_too_small_for_any_history_stops_start_up_naming_it() -> None:
    with pytest.raises(ConfigError, match="LOCAL_MODEL_CONTEXT=1024"):
        Settings.from_env({"LOCAL_MODEL_CONTEXT": "1024", "MAX_TOKENS": "400"}).for_provider("local")
