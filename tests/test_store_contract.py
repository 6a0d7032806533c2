"""The store contract (memory/base.py), one suite run against every backend."""

from __future__ import annotations

import threading

import pytest
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from memory.base import SessionStore, Summary

USER, ASSISTANT = MessageRole.USER, MessageRole.ASSISTANT


def exchange(n: int) -> list[ConversationalMessage]:
    return [ConversationalMessage(f"question {n}", USER), ConversationalMessage(f"answer {n}", ASSISTANT)]


def texts(turns: list[list[ConversationalMessage]]) -> list[list[tuple[str, str]]]:
    return [[(m.role.value, m.text) for m in turn] for turn in turns]


def test_new_session_is_empty(store: SessionStore) -> None:
    assert store.get_last_k_turns("alice", "s1", 10) == []
    assert store.list_events("alice", "s1") == []
    assert store.delete_session("alice", "s1") == 0
    assert store.get_summary("alice", "s1") is None


def test_add_turns_returns_the_user_message_count(store: SessionStore) -> None:
    assert store.add_turns("alice", "s1", exchange(1)) == 1
    assert store.add_turns("alice", "s1", exchange(2)) == 2
    assert store.add_turns("alice", "s1", [ConversationalMessage("a note", ASSISTANT)]) == 2


def test_last_k_turns_are_the_newest_oldest_first(store: SessionStore) -> None:
    for n in range(1, 8):
        store.add_turns("alice", "s1", exchange(n))
    turns = store.get_last_k_turns("alice", "s1", 3)
    assert texts(turns) == [
        [("USER", f"question {n}"), ("ASSISTANT", f"answer {n}")] for n in (5, 6, 7)
    ]


def test_k_larger_than_the_session_returns_everything(store: SessionStore) -> None:
    store.add_turns("alice", "s1", exchange(1))
    store.add_turns("alice", "s1", exchange(2))
    assert len(store.get_last_k_turns("alice", "s1", 50)) == 2


def test_a_turn_starts_at_each_user_message_even_across_events(store: SessionStore) -> None:
    # the seed's pattern: user and assistant stored by separate add_turns calls
    store.add_turns("alice", "s1", [ConversationalMessage("hello", USER)])
    store.add_turns("alice", "s1", [ConversationalMessage("hi there", ASSISTANT)])
    store.add_turns("alice", "s1", [ConversationalMessage("how are you?", USER)])
    store.add_turns("alice", "s1", [ConversationalMessage("fine", ASSISTANT)])
    assert texts(store.get_last_k_turns("alice", "s1", 1)) == [[("USER", "how are you?"), ("ASSISTANT", "fine")]]
    assert len(store.list_events("alice", "s1")) == 4


def test_one_event_may_hold_several_turns(store: SessionStore) -> None:
    store.add_turns("alice", "s1", exchange(1) + exchange(2))
    assert texts(store.get_last_k_turns("alice", "s1", 1)) == [[("USER", "question 2"), ("ASSISTANT", "answer 2")]]
    [event] = store.list_events("alice", "s1")
    assert [m.text for m in event.messages] == ["question 1", "answer 1", "question 2", "answer 2"]


def test_list_events_returns_every_event_oldest_first(store: SessionStore) -> None:
    for n in range(1, 4):
        store.add_turns("alice", "s1", exchange(n))
    events = store.list_events("alice", "s1")
    assert [[m.text for m in e.messages] for e in events] == [[f"question {n}", f"answer {n}"] for n in (1, 2, 3)]
    assert len({e.event_id for e in events}) == 3


def test_same_session_id_under_two_actors_is_two_conversations(store: SessionStore) -> None:
    store.add_turns("alice", "chat", exchange(1))
    assert store.get_last_k_turns("bob", "chat", 10) == []
    assert store.add_turns("bob", "chat", exchange(2)) == 1
    assert texts(store.get_last_k_turns("alice", "chat", 10))[0][0] == ("USER", "question 1")


@pytest.mark.parametrize(
    ("first", "second"),
    [(("a:b", "c"), ("a", "b:c")), (("a", "b_c"), ("a_b", "c")), (("a-b", "c"), ("a", "b-c")), (("ab", "c"), ("a", "bc"))],
)
def test_keys_do_not_collide(store: SessionStore, first: tuple[str, str], second: tuple[str, str]) -> None:
    store.add_turns(*first, exchange(1))
    assert store.get_last_k_turns(*second, 10) == []
    assert store.delete_session(*second) == 0
    assert len(store.get_last_k_turns(*first, 10)) == 1


def test_delete_session_removes_that_session_only(store: SessionStore) -> None:
    for n in range(3):
        store.add_turns("alice", "s1", exchange(n))
    store.add_turns("alice", "s2", exchange(9))
    store.add_turns("bob", "s1", exchange(9))
    store.put_summary("alice", "s1", Summary("they talked", 1))
    assert store.delete_session("alice", "s1") == 3
    assert store.get_last_k_turns("alice", "s1", 10) == []
    assert store.get_summary("alice", "s1") is None
    assert len(store.get_last_k_turns("alice", "s2", 10)) == 1
    assert len(store.get_last_k_turns("bob", "s1", 10)) == 1
    # a cleared session starts again at 1
    assert store.add_turns("alice", "s1", exchange(1)) == 1


def test_unicode_and_large_content_round_trip(store: SessionStore) -> None:
    text = "héllo 🌍 — こんにちは\n\"quoted\" {json: [1]} " + "x" * 20_000
    store.add_turns("alice", "s1", [ConversationalMessage(text, USER), ConversationalMessage("ok ✓", ASSISTANT)])
    assert texts(store.get_last_k_turns("alice", "s1", 1)) == [[("USER", text), ("ASSISTANT", "ok ✓")]]


def test_empty_message_list_is_refused_and_stores_nothing(store: SessionStore) -> None:
    with pytest.raises(ValueError):
        store.add_turns("alice", "s1", [])
    assert store.list_events("alice", "s1") == []


def test_summary_round_trips_and_is_replaced(store: SessionStore) -> None:
    store.put_summary("alice", "s1", Summary("first", 3))
    store.put_summary("alice", "s1", Summary("second", 7))
    assert store.get_summary("alice", "s1") == Summary("second", 7)
    assert store.get_summary("bob", "s1") is None


def test_concurrent_writers_get_distinct_gap_free_counts(store: SessionStore) -> None:
    counts: list[int] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        for n in range(25):
            c = store.add_turns("alice", "busy", exchange(w * 100 + n))
            with lock:
                counts.append(c)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == list(range(1, 201))
    turns = store.get_last_k_turns("alice", "busy", 500)
    assert len(turns) == 200
    for turn in turns:  # every turn whole: its own question and its own answer, never interleaved
        assert [m.role for m in turn] == [USER, ASSISTANT]
        assert turn[0].text.replace("question", "answer") == turn[1].text


def test_sessions_expire_after_the_ttl(store_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    if store_factory.no_session_ttl:
        pytest.skip(store_factory.no_session_ttl)
    import time as time_module

    now = [1_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    monkeypatch.setattr(time_module, "monotonic", lambda: now[0])
    s = store_factory.make(ttl=60)
    try:
        s.add_turns("alice", "old", exchange(1))
        now[0] += 30
        s.add_turns("alice", "fresh", exchange(1))
        s.add_turns("alice", "old", exchange(2))  # a write refreshes the expiry
        now[0] += 45
        assert len(s.get_last_k_turns("alice", "old", 10)) == 2
        now[0] += 30
        assert s.get_last_k_turns("alice", "old", 10) == []
        assert s.list_events("alice", "old") == []
        assert s.add_turns("alice", "old", exchange(3)) == 1  # an expired session starts again
    finally:
        s.close()


def test_turns_survive_reopening_the_store(durable_store_factory) -> None:
    store_factory = durable_store_factory
    first = store_factory.make()
    first.add_turns("alice", "s1", exchange(1))
    first.close()
    second = store_factory.make()
    try:
        assert texts(second.get_last_k_turns("alice", "s1", 10)) == [[("USER", "question 1"), ("ASSISTANT", "answer 1")]]
        assert second.add_turns("alice", "s1", exchange(2)) == 2
    finally:
        second.close()
