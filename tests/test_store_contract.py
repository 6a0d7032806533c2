"""The store contract (memory/base.py), one suite run against every backend (``STORE_FACTORIES``)."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.errors import AlreadyStored, InvalidCursor, SessionChanged
from memory.base import HistoryTurn, SessionStore, StoredReply, Summary, Window
from memory.expiry import DEFAULT_TURN_GRACE

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


def test_a_window_that_carries_the_summary_carries_the_stored_one(store: SessionStore) -> None:
    """A store may read the rolling summary with the window (SQLite does); it must then be get_summary's."""
    for n in range(1, 4):
        store.add_turns("alice", "s1", exchange(n))
    stages = [lambda: None, lambda: store.put_summary("alice", "s1", Summary("first", 1)),
              lambda: store.put_summary("alice", "s1", Summary("second", 2)),
              lambda: store.delete_session("alice", "s1")]
    for stage in stages:
        stage()
        window = store.load_window("alice", "s1", 2)
        if window.summary_read:
            assert window.summary == store.get_summary("alice", "s1")
    if store.name == "sqlite":
        assert window.summary_read  # the default store saves the turn its second read


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


# -- generations: a delete stays deleted -----------------------------------------------------------

def test_load_window_holds_the_newest_turns_the_count_and_the_generation(store: SessionStore) -> None:
    assert store.load_window("alice", "s1", 3) == Window([], 0, 0)
    for n in range(1, 6):
        store.add_turns("alice", "s1", exchange(n))
    window = store.load_window("alice", "s1", 3)
    assert texts(window.turns) == [[("USER", f"question {n}"), ("ASSISTANT", f"answer {n}")] for n in (3, 4, 5)]
    assert (window.generation, window.message_count) == (0, 5)
    assert texts(store.get_last_k_turns("alice", "s1", 3)) == texts(window.turns)


def test_every_clear_moves_the_generation_on_even_of_an_empty_session(store: SessionStore) -> None:
    store.add_turns("alice", "s1", exchange(1))
    store.delete_session("alice", "s1")
    assert store.load_window("alice", "s1", 5) == Window([], 1, 0)
    store.delete_session("alice", "s1")
    assert store.load_window("alice", "s1", 5).generation == 2
    assert store.load_window("bob", "s1", 5).generation == 0  # per (actor, session)


def test_a_turn_loaded_before_a_clear_stores_nothing_and_says_why(store: SessionStore) -> None:
    store.add_turns("alice", "s1", exchange(1))
    window = store.load_window("alice", "s1", 5)
    store.delete_session("alice", "s1")  # the clear lands while the model is answering
    with pytest.raises(SessionChanged) as info:
        store.add_turns("alice", "s1", exchange(2), generation=window.generation)
    assert info.value.status == 409 and "nothing was stored" in info.value.message
    assert store.list_events("alice", "s1") == []
    assert store.load_window("alice", "s1", 5).message_count == 0


def test_a_cleared_session_stays_cleared_after_a_late_summary(store: SessionStore) -> None:
    for n in range(1, 4):
        store.add_turns("alice", "s1", exchange(n))
    window = store.load_window("alice", "s1", 2)
    store.delete_session("alice", "s1")  # the clear lands while the rolling summary is being folded
    late = Summary("turns 1-2 of the old talk", 2)
    assert store.put_summary("alice", "s1", late, generation=window.generation) is False
    assert store.get_summary("alice", "s1") is None
    assert store.list_sessions("alice", 10).sessions == []
    assert store.load_window("alice", "s1", 5).message_count == 0


def test_after_a_clear_the_next_turn_starts_at_1_and_sees_no_old_summary(store: SessionStore) -> None:
    for n in range(1, 4):
        store.add_turns("alice", "s1", exchange(n))
    assert store.put_summary("alice", "s1", Summary("the old talk", 2), generation=0) is True
    store.delete_session("alice", "s1")
    window = store.load_window("alice", "s1", 5)
    assert store.add_turns("alice", "s1", exchange(9), generation=window.generation) == 1
    assert store.get_summary("alice", "s1") is None
    assert store.put_summary("alice", "s1", Summary("the new talk", 1), generation=window.generation) is True
    assert store.get_summary("alice", "s1") == Summary("the new talk", 1)


def test_a_summary_alone_neither_counts_nor_lists(store: SessionStore) -> None:
    assert store.put_summary("alice", "s1", Summary("nothing yet", 0), generation=0) is True
    assert store.load_window("alice", "s1", 5) == Window([], 0, 0)
    assert store.list_sessions("alice", 10).sessions == []
    assert store.get_history("alice", "s1", 10).turns == []


@pytest.fixture
def replicas(durable_store_factory) -> Iterator[tuple[SessionStore, SessionStore]]:
    """Two store objects on the same data: two replicas of the server (one SQLite file, one Redis prefix)."""
    first, second = durable_store_factory.make(), durable_store_factory.make()
    yield first, second
    first.close()
    second.close()


def test_a_late_summary_from_another_replica_never_reaches_the_cleared_session(replicas) -> None:
    a, b = replicas
    for n in range(1, 4):
        a.add_turns("alice", "s1", exchange(n))
    window = a.load_window("alice", "s1", 2)
    b.delete_session("alice", "s1")
    late = Summary("turns 1-2 of the old talk", 2)
    assert a.put_summary("alice", "s1", late, generation=window.generation) is False
    assert b.get_summary("alice", "s1") is None
    fresh = b.load_window("alice", "s1", 5)
    assert b.add_turns("alice", "s1", exchange(9), generation=fresh.generation) == 1
    assert a.get_summary("alice", "s1") is None and b.get_summary("alice", "s1") is None


def test_a_turn_from_another_replica_begun_before_a_clear_is_refused(durable_store_factory, replicas) -> None:
    if durable_store_factory.no_shared_generations:
        pytest.skip(durable_store_factory.no_shared_generations)
    a, b = replicas
    a.add_turns("alice", "s1", exchange(1))
    window = a.load_window("alice", "s1", 5)
    b.delete_session("alice", "s1")
    with pytest.raises(SessionChanged):
        a.add_turns("alice", "s1", exchange(2), generation=window.generation)
    assert b.list_events("alice", "s1") == []
    fresh = a.load_window("alice", "s1", 5)
    assert fresh.generation != window.generation and fresh.message_count == 0
    assert a.add_turns("alice", "s1", exchange(3), generation=fresh.generation) == 1
    assert texts(b.get_last_k_turns("alice", "s1", 5)) == [[("USER", "question 3"), ("ASSISTANT", "answer 3")]]


# -- idempotency: a retried request is stored once ------------------------------------------------

def test_a_retried_turn_is_stored_once_and_answers_the_original_reply(store: SessionStore) -> None:
    store.add_turns("alice", "s1", exchange(1))
    assert store.find_request("alice", "s1", "req-2") is None
    assert store.add_turns("alice", "s1", exchange(2), idempotency_key="req-2") == 2
    assert store.find_request("alice", "s1", "req-2") == StoredReply(2, "answer 2")
    with pytest.raises(AlreadyStored) as info:
        store.add_turns("alice", "s1", [ConversationalMessage("question 2", USER),
                                        ConversationalMessage("another answer", ASSISTANT)], idempotency_key="req-2")
    assert (info.value.message_count, info.value.reply) == (2, "answer 2")
    assert len(store.list_events("alice", "s1")) == 2
    assert store.add_turns("alice", "s1", exchange(3), idempotency_key="req-3") == 3


def test_an_idempotency_key_belongs_to_its_session(store: SessionStore) -> None:
    store.add_turns("alice", "s1", exchange(1), idempotency_key="k")
    assert store.find_request("alice", "s2", "k") is None and store.find_request("bob", "s1", "k") is None
    assert store.add_turns("alice", "s2", exchange(1), idempotency_key="k") == 1
    assert store.add_turns("bob", "s1", exchange(1), idempotency_key="k") == 1


def _race(writers: list[Callable[[], int]]) -> tuple[list[int], list[AlreadyStored]]:
    """Run the writers at once (a barrier); what each stored or was told."""
    barrier = threading.Barrier(len(writers))
    stored: list[int] = []
    refused: list[AlreadyStored] = []
    lock = threading.Lock()

    def run(write: Callable[[], int]) -> None:
        barrier.wait()
        try:
            count = write()
            with lock:
                stored.append(count)
        except AlreadyStored as e:
            with lock:
                refused.append(e)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return stored, refused


def test_concurrent_writers_with_one_key_store_one_turn(store: SessionStore) -> None:
    store.add_turns("alice", "s1", exchange(1))
    stored, refused = _race([lambda: store.add_turns("alice", "s1", exchange(2), idempotency_key="same")] * 8)
    assert stored == [2]
    assert [(e.message_count, e.reply) for e in refused] == [(2, "answer 2")] * 7
    assert len(store.list_events("alice", "s1")) == 2


def test_replicas_writing_one_key_at_once_store_one_turn(replicas) -> None:
    a, b = replicas
    stored, refused = _race([lambda s=s: s.add_turns("alice", "s1", exchange(1), idempotency_key="same")
                             for s in (a, b, a, b)])
    assert stored == [1] and len(refused) == 3
    assert len(b.list_events("alice", "s1")) == 1
    assert a.find_request("alice", "s1", "same") == StoredReply(1, "answer 1")


def test_a_cleared_session_forgets_its_idempotency_keys(store: SessionStore) -> None:
    store.add_turns("alice", "s1", exchange(1), idempotency_key="k")
    store.delete_session("alice", "s1")
    assert store.find_request("alice", "s1", "k") is None  # a deleted reply never comes back
    assert store.add_turns("alice", "s1", exchange(5), idempotency_key="k") == 1
    assert store.find_request("alice", "s1", "k") == StoredReply(1, "answer 5")


def test_idempotency_keys_are_kept_24_hours_without_a_ttl(store_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [time.time()]
    monkeypatch.setattr(time, "time", lambda: now[0])
    s = store_factory.make()
    try:
        s.add_turns("alice", "s1", exchange(1), idempotency_key="k")
        now[0] += 23 * 3600
        assert s.find_request("alice", "s1", "k") == StoredReply(1, "answer 1")
        now[0] += 3600 + 1
        assert s.find_request("alice", "s1", "k") is None
        assert s.add_turns("alice", "s1", exchange(2), idempotency_key="k") == 2
    finally:
        s.close()


# -- listing and history ---------------------------------------------------------------------------

def test_list_sessions_shows_newest_write_first_with_counts_and_first_messages(store: SessionStore) -> None:
    long_question = "Where should we go in May? " + "x" * 200
    store.add_turns("alice", "trip", [ConversationalMessage(long_question, USER),
                                      ConversationalMessage("Oslo", ASSISTANT)])
    store.add_turns("alice", "recipes", exchange(1))
    store.add_turns("alice", "work", exchange(1))
    store.add_turns("alice", "recipes", exchange(2))
    page = store.list_sessions("alice", 10)
    assert [(i.session_id, i.message_count) for i in page.sessions] == [("recipes", 2), ("work", 1), ("trip", 1)]
    assert page.next_cursor is None
    assert page.sessions[2].first_message == long_question[:120]
    assert page.sessions[0].first_message == "question 1"
    assert page.sessions[0].updated_at >= page.sessions[1].updated_at >= page.sessions[2].updated_at
    assert abs(page.sessions[0].updated_at - time.time()) < 300  # epoch seconds


def test_list_sessions_pages_through_every_session_once(store: SessionStore) -> None:
    for n in range(7):
        store.add_turns("alice", f"s{n}", exchange(n))
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        page = store.list_sessions("alice", 3, cursor)
        seen += [i.session_id for i in page.sessions]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"s{n}" for n in reversed(range(7))]
    assert cursor is None


def test_list_sessions_leaves_out_other_actors_and_cleared_sessions(store: SessionStore) -> None:
    store.add_turns("alice", "kept", exchange(1))
    store.add_turns("alice", "cleared", exchange(1))
    store.add_turns("bob", "theirs", exchange(1))
    store.delete_session("alice", "cleared")
    store.put_summary("alice", "summary-only", Summary("x", 0))
    assert [i.session_id for i in store.list_sessions("alice", 10).sessions] == ["kept"]
    assert [i.session_id for i in store.list_sessions("bob", 10).sessions] == ["theirs"]
    assert store.list_sessions("carol", 10).sessions == []


@pytest.mark.parametrize("cursor", ["", "nope", "!!!", base64.urlsafe_b64encode(b'{"a": 1}').decode(),
                                    base64.urlsafe_b64encode(b'[2, 1.5, "s"]').decode()])
def test_a_cursor_this_server_did_not_issue_is_a_400(store: SessionStore, cursor: str) -> None:
    store.add_turns("alice", "s1", exchange(1))
    with pytest.raises(InvalidCursor) as info:
        store.list_sessions("alice", 10, cursor)
    assert info.value.status == 400 and "cursor" in info.value.message


def test_history_pages_newest_first_with_turns_oldest_first(store: SessionStore) -> None:
    for n in range(1, 8):
        store.add_turns("alice", "s1", exchange(n))
    first = store.get_history("alice", "s1", 3)
    assert [(t.turn, t.user, t.assistant) for t in first.turns] == [(n, f"question {n}", f"answer {n}")
                                                                   for n in (5, 6, 7)]
    assert first.next_before == 5
    second = store.get_history("alice", "s1", 3, first.next_before)
    assert [t.turn for t in second.turns] == [2, 3, 4] and second.next_before == 2
    last = store.get_history("alice", "s1", 3, second.next_before)
    assert [t.turn for t in last.turns] == [1] and last.next_before is None
    assert store.get_history("alice", "s1", 3, 1).turns == []
    created = [t.created_at for t in last.turns + second.turns + first.turns]
    assert created == sorted(created) and abs(created[-1] - time.time()) < 300


def test_history_joins_turns_stored_as_separate_events(store: SessionStore) -> None:
    store.add_turns("alice", "s1", [ConversationalMessage("hello", USER)])
    store.add_turns("alice", "s1", [ConversationalMessage("hi there", ASSISTANT)])
    store.add_turns("alice", "s1", exchange(2) + exchange(3))
    page = store.get_history("alice", "s1", 10)
    assert [(t.turn, t.user, t.assistant) for t in page.turns] == [
        (1, "hello", "hi there"), (2, "question 2", "answer 2"), (3, "question 3", "answer 3")]
    assert page.next_before is None
    assert isinstance(page.turns[0], HistoryTurn)


def test_history_of_an_empty_or_cleared_session_is_empty(store: SessionStore) -> None:
    assert store.get_history("alice", "s1", 10).turns == []
    store.add_turns("alice", "s1", exchange(1))
    store.delete_session("alice", "s1")
    page = store.get_history("alice", "s1", 10)
    assert (page.turns, page.next_before) == ([], None)


# -- expiry ----------------------------------------------------------------------------------------
# The rule (memory/expiry.py), for every backend with SESSION_TTL (a new one included): a write keeps the
# session SESSION_TTL from the write; a turn's load_window holds it max(SESSION_TTL, turn grace) from the load,
# so the turn finds what it loaded when it stores; expiry only moves later; an expired session reads as
# empty and starts again at 1 under a NEW generation (the generation outlives the data), so a writer that
# loaded the old life is refused and no (generation, turn) pair of the old life is repeated. Expiry is not
# a delete: long-term records of an expired session stay.

def wait_past(instant: float, timeout: float = 10.0) -> None:
    """Let the clock pass ``instant``: expiry is time passing, there is no event to wait on."""
    deadline = time.monotonic() + timeout
    while time.time() <= instant:
        assert time.monotonic() < deadline, "the clock did not pass the instant in time"
        time.sleep(0.05)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.05)


def test_a_session_id_used_again_after_expiry_starts_a_new_generation(store_factory) -> None:
    """SESSION_TTL=1 s. The session expires; the same id then starts again at 1 under a generation its earlier
    life never had (long-term memory keys its records by (generation, turn): the new turn 1 is a new record),
    and a writer that loaded the old life is refused, as after a clear."""
    if store_factory.no_session_ttl:
        pytest.skip(store_factory.no_session_ttl)
    s = store_factory.make(ttl=1)
    try:
        old = s.load_window("alice", "x", 5)
        assert s.add_turns("alice", "x", exchange(1), generation=old.generation) == 1
        assert s.add_turns("alice", "x", exchange(2), generation=old.generation) == 2
        wait_until(lambda: s.get_history("alice", "x", 10).turns == [])
        assert s.list_sessions("alice", 10).sessions == [] and s.get_last_k_turns("alice", "x", 5) == []
        new = s.load_window("alice", "x", 5)
        assert new.generation > old.generation and (new.turns, new.message_count) == ([], 0)
        with pytest.raises(SessionChanged):  # a turn that loaded the expired life
            s.add_turns("alice", "x", exchange(3), generation=old.generation)
        said = [ConversationalMessage("new content", USER), ConversationalMessage("noted", ASSISTANT)]
        assert s.add_turns("alice", "x", said, generation=new.generation) == 1
        assert [(t.turn, t.user) for t in s.get_history("alice", "x", 10).turns] == [(1, "new content")]
        wait_until(lambda: s.get_history("alice", "x", 10).turns == [])
        assert s.add_turns("alice", "x", exchange(4)) == 1  # a write without a load: a new generation too
        assert s.load_window("alice", "x", 5).generation > new.generation
    finally:
        s.close()


def test_a_turn_slower_than_the_ttl_keeps_the_history_it_loaded(store_factory) -> None:
    """SESSION_TTL=1 s and a model slower than that: the turn loads inside the TTL and stores after it. Its
    load held the session for the turn, so it stores turn 2 beside the turn it loaded."""
    if store_factory.no_session_ttl:
        pytest.skip(store_factory.no_session_ttl)
    s = store_factory.make(ttl=1)
    try:
        s.add_turns("alice", "s1", exchange(1))
        written = time.time()
        window = s.load_window("alice", "s1", 5)
        assert window.message_count == 1 and texts(window.turns) == texts([exchange(1)])
        wait_past(written + 1.5)  # the model answers more than SESSION_TTL after the last write
        assert s.add_turns("alice", "s1", exchange(2), generation=window.generation) == 2
        assert [t.turn for t in s.get_history("alice", "s1", 10).turns] == [1, 2]
        assert s.load_window("alice", "s1", 5).generation == window.generation
    finally:
        s.close()


def test_a_write_never_cuts_short_the_hold_of_a_turn_in_progress(store_factory) -> None:
    """Two turns of one session (two replicas, say): the slow one loads, the quick one loads and stores at
    once; the slow one stores after SESSION_TTL and still finds both earlier turns."""
    if store_factory.no_session_ttl:
        pytest.skip(store_factory.no_session_ttl)
    s = store_factory.make(ttl=1)
    try:
        s.add_turns("alice", "s1", exchange(1))
        slow = s.load_window("alice", "s1", 5)
        quick = s.load_window("alice", "s1", 5)
        assert s.add_turns("alice", "s1", exchange(2), generation=quick.generation) == 2
        written = time.time()
        wait_past(written + 1.5)
        assert s.add_turns("alice", "s1", exchange(3), generation=slow.generation) == 3
        assert [t.turn for t in s.get_history("alice", "s1", 10).turns] == [1, 2, 3]
    finally:
        s.close()


def test_clearing_an_expired_session_reports_nothing_deleted(store_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    if store_factory.no_session_ttl:
        pytest.skip(store_factory.no_session_ttl)
    now = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    s = store_factory.make(ttl=60)
    try:
        s.add_turns("alice", "s1", exchange(1))
        s.add_turns("alice", "s2", exchange(1))
        now[0] += 61
        assert s.delete_session("alice", "s1") == 0
        assert s.list_sessions("alice", 10).sessions == []
        assert s.get_history("alice", "s2", 10).turns == []
        assert s.put_summary("alice", "s2", Summary("of an expired talk", 1), generation=0) is False
        assert s.get_summary("alice", "s2") is None
        assert s.add_turns("alice", "s2", exchange(2)) == 1
    finally:
        s.close()


def test_a_turn_in_progress_keeps_its_session_alive(store_factory) -> None:
    """SESSION_TTL=2 s; turns load 1.2 s apart and the first stores 2.4 s after the last write: still alive."""
    if store_factory.no_session_ttl:
        pytest.skip(store_factory.no_session_ttl)
    s = store_factory.make(ttl=2)
    try:
        s.add_turns("alice", "s1", exchange(1))
        first = s.load_window("alice", "s1", 5)
        time.sleep(1.2)
        second = s.load_window("alice", "s1", 5)  # the next turn's load, before the first one stores
        time.sleep(1.2)
        assert s.add_turns("alice", "s1", exchange(2), generation=first.generation) == 2
        assert second.message_count == 1
        assert [t.turn for t in s.get_history("alice", "s1", 10).turns] == [1, 2]
    finally:
        s.close()


def test_a_turns_hold_ends_and_a_clear_after_expiry_moves_past_the_generation_it_reported(
        store_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hold is bounded: a session a turn loaded and never wrote to expires max(SESSION_TTL, turn grace)
    after the load. A clear of an expired session moves the generation past the one a load reported, so a
    turn begun after the expiry and before the clear is refused too."""
    if store_factory.no_session_ttl:
        pytest.skip(store_factory.no_session_ttl)
    now = [2_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    s = store_factory.make(ttl=60)
    try:
        s.add_turns("alice", "s1", exchange(1))
        loaded = s.load_window("alice", "s1", 5)  # a turn whose model never answers
        now[0] += max(60, DEFAULT_TURN_GRACE) - 1
        assert s.get_last_k_turns("alice", "s1", 5) != []  # held for the turn
        now[0] += 2
        assert s.get_last_k_turns("alice", "s1", 5) == [] and s.list_sessions("alice", 10).sessions == []
        reported = s.load_window("alice", "s1", 5).generation
        assert reported > loaded.generation
        s.delete_session("alice", "s1")
        with pytest.raises(SessionChanged):
            s.add_turns("alice", "s1", exchange(2), generation=reported)
        assert s.load_window("alice", "s1", 5).generation > reported
    finally:
        s.close()


def test_a_history_turn_is_dated_by_the_event_that_stored_its_question(store: SessionStore) -> None:
    for n in range(1, 41):  # the question and the answer's three parts stored apart: four events per turn
        store.add_turns("alice", "s1", [ConversationalMessage(f"question {n}", USER)])
        for part in range(3):
            store.add_turns("alice", "s1", [ConversationalMessage(f"answer {n}.{part}", ASSISTANT)])
    asked = {e.messages[0].text: e.timestamp for e in store.list_events("alice", "s1")
             if e.messages[0].role == USER}
    page = store.get_history("alice", "s1", 7, 20)
    assert [t.turn for t in page.turns] == list(range(13, 20)) and page.next_before == 13
    assert page.turns[0].assistant == "answer 13.0\nanswer 13.1\nanswer 13.2"
    assert [t.created_at for t in page.turns] == pytest.approx([asked[t.user] for t in page.turns], abs=1e-3)
