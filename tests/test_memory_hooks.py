"""MemoryHooks on their own: a Strands Agent, a store, a scripted model; no HTTP, no entrypoint."""

from __future__ import annotations

import pytest
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from strands import Agent

from hooks.memory import MemoryHooks
from memory.base import SessionStore
from memory.turn import TurnState
from tests.helpers.scripted_model import ScriptedModel

USER, ASSISTANT = MessageRole.USER, MessageRole.ASSISTANT


def run_turn(store: SessionStore, model: ScriptedModel, message: str, *, actor: str = "alice",
             session: str = "s1", k: int = 10) -> TurnState:
    state = TurnState(actor, session)
    Agent(model=model, hooks=[MemoryHooks(store, state, k)], callback_handler=None)(message)
    return state


def test_model_sees_previous_turns_oldest_first_before_the_new_message(store: SessionStore) -> None:
    model = ScriptedModel("Hi Ana!", "Your name is Ana.")
    run_turn(store, model, "My name is Ana")
    hooks = run_turn(store, model, "What is my name?")
    assert model.seen_texts() == [
        ("user", "My name is Ana"),
        ("assistant", "Hi Ana!"),
        ("user", "What is my name?"),
    ]
    assert hooks.history_length == 1
    assert hooks.message_count == 2


def test_only_the_new_exchange_is_stored_never_the_replayed_history(store: SessionStore) -> None:
    model = ScriptedModel(echo=True)
    for n in range(5):
        run_turn(store, model, f"message {n}")
    events = store.list_events("alice", "s1")
    assert len(events) == 5
    assert [[(m.role, m.text) for m in e.messages] for e in events] == [
        [(USER, f"message {n}"), (ASSISTANT, f"You said 'message {n}'")] for n in range(5)
    ]


def test_only_k_turns_reach_the_model(store: SessionStore) -> None:
    model = ScriptedModel(echo=True)
    for n in range(6):
        run_turn(store, model, f"message {n}", k=3)
    seen = [text for role, text in model.seen_texts() if role == "user"]
    assert seen == ["message 2", "message 3", "message 4", "message 5"]


def test_history_alternates_roles_even_when_the_store_holds_odd_turns(store: SessionStore) -> None:
    store.add_turns("alice", "s1", [ConversationalMessage("orphan reply", ASSISTANT)])  # no user message
    store.add_turns("alice", "s1", [ConversationalMessage("question without answer", USER)])
    store.add_turns("alice", "s1", [ConversationalMessage("q", USER), ConversationalMessage("a", ASSISTANT)])
    store.add_turns("alice", "s1", [ConversationalMessage("tool says", MessageRole.TOOL)])
    model = ScriptedModel("ok")
    hooks = run_turn(store, model, "next")
    roles = [m["role"] for m in model.last_messages]
    assert roles == ["user", "assistant", "user"]
    assert model.seen_texts()[:2] == [("user", "q"), ("assistant", "a")]
    assert hooks.history_length == 1


def test_a_failed_model_call_stores_nothing(store: SessionStore) -> None:
    run_turn(store, ScriptedModel("first answer"), "first")
    with pytest.raises(RuntimeError):
        run_turn(store, ScriptedModel(RuntimeError("model exploded")), "second")
    assert [e.messages[0].text for e in store.list_events("alice", "s1")] == ["first"]
    hooks = run_turn(store, ScriptedModel("third answer"), "third")
    assert hooks.message_count == 2


def test_other_actor_and_other_session_see_nothing(store: SessionStore) -> None:
    run_turn(store, ScriptedModel("secret noted"), "my secret is 42", actor="alice", session="s1")
    bob_model = ScriptedModel("hello bob")
    run_turn(store, bob_model, "what is the secret?", actor="bob", session="s1")
    other_model = ScriptedModel("hello again")
    run_turn(store, other_model, "what is the secret?", actor="alice", session="s2")
    assert bob_model.seen_texts() == [("user", "what is the secret?")]
    assert other_model.seen_texts() == [("user", "what is the secret?")]


def test_skip_store_leaves_the_session_untouched(store: SessionStore) -> None:
    state = TurnState("alice", "s1")
    state.skip_store = True
    Agent(model=ScriptedModel("done"), hooks=[MemoryHooks(store, state, 10)], callback_handler=None)("do not keep this")
    assert store.list_events("alice", "s1") == []
    assert state.message_count is None
