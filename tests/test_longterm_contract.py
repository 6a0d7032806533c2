"""The long-term memory contract (``longterm.base``), over every local store: a SQLite file and in-process;
then what only a file can meet: deleted or replaced under a running store."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from core.errors import LongTermUnavailable
from longterm.base import MessageRecord
from longterm.local import LocalLongTermMemory
from longterm.sqlite_store import SQLiteLongTermStore
from tests.helpers.longterm_helpers import local_ltm, say, texts
from tests.test_sqlite_store import remove_database

FACT = "I am allergic to peanuts, please remember that"


@pytest.fixture(params=["sqlite", "memory"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], LocalLongTermMemory]]:
    """Builds a long-term memory; every call on the sqlite side opens the same file (another replica)."""
    opened: list[LocalLongTermMemory] = []

    def build() -> LocalLongTermMemory:
        ltm = local_ltm(tmp_path / "longterm.db" if request.param == "sqlite" else None)
        opened.append(ltm)
        return ltm

    yield build
    for ltm in opened:
        ltm.close()


@pytest.fixture
def ltm(make: Callable[[], LocalLongTermMemory]) -> LocalLongTermMemory:
    return make()


def test_a_fact_said_in_one_session_is_found_from_another(ltm: LocalLongTermMemory) -> None:
    say(ltm, "alice", "s1", 1, "We talked about the weather in Paris")
    say(ltm, "alice", "s1", 2, FACT, "I will keep peanuts out of every recipe.")
    say(ltm, "alice", "s1", 3, "My favourite colour is green")
    ltm.flush()
    found = ltm.search("alice", "Do I have any food allergies? peanuts?", 3)
    assert found[0].text == FACT
    assert (found[0].session_id, found[0].turn, found[0].role) == ("s1", 2, "user")
    assert 0.0 <= found[0].score <= 1.0


def test_records_keep_their_provenance(ltm: LocalLongTermMemory) -> None:
    say(ltm, "alice", "trip", 7, "I fly to Oslo on the 3rd of May", "Have a good flight!", at=1_683_550_000.0)
    ltm.flush()
    by_role = {m.role: m for m in ltm.search("alice", "flight to Oslo", 5)}
    assert set(by_role) == {"user", "assistant"}
    for memory in by_role.values():
        assert (memory.session_id, memory.turn, memory.created_at) == ("trip", 7, 1_683_550_000.0)
    assert by_role["user"].to_json()["created_at"] == "2023-05-08T12:46:40Z"


def test_another_actors_records_are_never_found(ltm: LocalLongTermMemory) -> None:
    say(ltm, "alice", "s1", 1, FACT)
    say(ltm, "alice2", "s1", 1, "alice2 also has peanuts in the pantry")
    ltm.flush()
    assert ltm.search("bob", "peanuts allergic", 10) == []
    assert all("alice2" not in m.text for m in ltm.search("alice", "peanuts alice2 pantry", 10))


def test_turns_in_the_window_are_left_out(ltm: LocalLongTermMemory) -> None:
    say(ltm, "alice", "s1", 1, "I like peanut butter")
    say(ltm, "alice", "s2", 1, "peanut butter on toast is my breakfast")
    ltm.flush()
    found = ltm.search("alice", "peanut butter", 10, exclude={("s2", 1)})
    assert {(m.session_id, m.turn) for m in found} == {("s1", 1)}


def test_nothing_queued_is_lost_on_a_clean_close(tmp_path: Path) -> None:
    ltm = local_ltm(tmp_path / "longterm.db")
    for turn in range(1, 41):
        say(ltm, "alice", "s1", turn, f"note number {turn} about gardening")
    ltm.close()  # no flush: close drains the queue
    reopened = local_ltm(tmp_path / "longterm.db")
    try:
        assert reopened.store.count("alice") == 80
        assert reopened.search("alice", "note number 17 gardening", 1)[0].text == "note number 17 about gardening"
    finally:
        reopened.close()


def test_a_cleared_session_loses_its_records_and_stays_cleared(ltm: LocalLongTermMemory) -> None:
    say(ltm, "alice", "s1", 1, FACT)
    say(ltm, "alice", "s2", 1, "I own a red bicycle")
    ltm.flush()
    assert ltm.delete_session("alice", "s1", generation=0) == 2
    say(ltm, "alice", "s1", 2, "peanuts again, from a turn that started before the clear", generation=0)
    ltm.flush()
    assert all(m.session_id == "s2" for m in ltm.search("alice", "peanuts bicycle", 10))
    say(ltm, "alice", "s1", 1, "after the clear: I moved to Bergen", generation=1)
    ltm.flush()
    assert texts(ltm.search("alice", "Bergen", 1)) == ["after the clear: I moved to Bergen"]


def test_forget_removes_everything_and_refuses_writes_from_before_it(ltm: LocalLongTermMemory) -> None:
    epoch = ltm.epoch("alice")
    say(ltm, "alice", "s1", 1, FACT, epoch=epoch)
    say(ltm, "alice", "s2", 1, "I own a red bicycle", epoch=epoch)
    say(ltm, "bob", "s1", 1, "bob's bicycle is blue")
    ltm.flush()
    assert ltm.forget("alice") == 4
    say(ltm, "alice", "s3", 1, "in flight before the forget: peanuts", epoch=epoch)
    ltm.flush()
    assert ltm.search("alice", "peanuts bicycle", 10) == []
    assert texts(ltm.search("bob", "bicycle", 1)) == ["bob's bicycle is blue"]
    say(ltm, "alice", "s4", 1, "a new start: I like tea", epoch=ltm.epoch("alice"))
    ltm.flush()
    assert texts(ltm.search("alice", "tea", 1)) == ["a new start: I like tea"]


def test_a_forget_under_concurrent_writes_stays_a_forget(ltm: LocalLongTermMemory) -> None:
    epoch = ltm.epoch("alice")
    stop = threading.Event()

    def writer(n: int) -> None:
        turn = 0
        while not stop.is_set() and turn < 200:
            turn += 1
            say(ltm, "alice", f"w{n}", turn, f"writer {n} says peanut fact {turn}", epoch=epoch)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    ltm.forget("alice")
    stop.set()
    for t in threads:
        t.join()
    ltm.flush()
    assert ltm.search("alice", "peanut fact writer", 10) == []
    assert ltm.store.count("alice") == 0


def test_a_second_replica_sees_writes_and_deletes_of_the_first(tmp_path: Path) -> None:
    """Two processes' worth of long-term memory on one SQLite file (an in-process store has no second replica)."""
    first, second = local_ltm(tmp_path / "longterm.db"), local_ltm(tmp_path / "longterm.db")
    say(first, "alice", "s1", 1, FACT)
    first.flush()
    assert texts(second.search("alice", "peanuts", 1)) == [FACT]  # loads alice into second's cache
    say(first, "alice", "s1", 2, "I also avoid shellfish")
    first.flush()
    assert texts(second.search("alice", "shellfish", 1)) == ["I also avoid shellfish"]
    epoch = second.epoch("alice")
    first.forget("alice")
    say(second, "alice", "s2", 1, "second replica, turn begun before the forget: peanuts", epoch=epoch)
    second.flush()
    assert second.search("alice", "peanuts shellfish", 10) == []
    assert first.search("alice", "peanuts shellfish", 10) == []
    first.close()
    second.close()


def test_records_survive_a_restart(tmp_path: Path) -> None:
    ltm = local_ltm(tmp_path / "longterm.db")
    say(ltm, "alice", "s1", 1, FACT)
    ltm.close()
    again = local_ltm(tmp_path / "longterm.db")
    try:
        assert texts(again.search("alice", "peanuts", 1)) == [FACT]
        assert again.forget("alice") == 2
    finally:
        again.close()


def test_a_record_written_twice_is_stored_once(ltm: LocalLongTermMemory) -> None:
    say(ltm, "alice", "s1", 1, FACT)
    say(ltm, "alice", "s1", 1, FACT)
    ltm.flush()
    assert ltm.store.count("alice") == 2
    assert ltm.refused == 2


def test_an_empty_store_or_query_finds_nothing(ltm: LocalLongTermMemory) -> None:
    assert ltm.search("nobody", "anything", 5) == []
    say(ltm, "alice", "s1", 1, FACT)
    ltm.flush()
    assert ltm.search("alice", "   ", 5) == []
    assert ltm.search("alice", "peanuts", 0) == []
    # FTS5 syntax in a query is only text
    assert ltm.search("alice", 'peanuts" OR owner:* NEAR(', 1)[0].text == FACT


# -- the records file under a running store -------------------------------------------------------------

def exchange(actor: str, session: str, turn: int) -> tuple[list[MessageRecord], np.ndarray]:
    records = [MessageRecord(actor, session, turn, 0, "user", f"question {turn}", 1_683_550_000.0),
               MessageRecord(actor, session, turn, 1, "assistant", f"answer {turn}", 1_683_550_000.0)]
    return records, np.zeros((2, 384), np.float32)


def test_a_records_file_deleted_under_a_running_store_acknowledges_no_write(tmp_path: Path) -> None:
    path = tmp_path / "sessions-longterm.db"
    store = SQLiteLongTermStore(path)
    assert store.write(*exchange("alice", "s1", 1)) == 2
    remove_database(path)
    for turn in (2, 3):  # every write, not just the first: each would be lost at the next restart
        with pytest.raises(LongTermUnavailable) as info:
            store.write(*exchange("alice", "s1", turn))
        assert info.value.status == 503
        assert info.value.message == (f"long-term store {path}: writing records failed: the database file {path} "
                                      "was deleted or replaced while the server was running; restart the server")
    with pytest.raises(LongTermUnavailable, match="deleted or replaced"):
        store.delete_session("alice", "s1", 0)
    with pytest.raises(LongTermUnavailable, match="deleted or replaced"):
        store.forget("alice")
    store.close()
    restarted = SQLiteLongTermStore(path)
    assert restarted.session_records("alice", "s1") == []  # nothing was acknowledged into the void
    assert restarted.write(*exchange("alice", "s1", 2)) == 2
    restarted.close()


def test_a_records_file_replaced_under_a_running_store_acknowledges_no_write(tmp_path: Path) -> None:
    path, other = tmp_path / "sessions-longterm.db", tmp_path / "other.db"
    store = SQLiteLongTermStore(path)
    store.write(*exchange("alice", "s1", 1))
    elsewhere = SQLiteLongTermStore(other)
    elsewhere.write(*exchange("bob", "elsewhere", 1))
    elsewhere.close()
    remove_database(path)
    os.replace(other, path)
    with pytest.raises(LongTermUnavailable, match="deleted or replaced"):
        store.write(*exchange("alice", "s1", 2))
    store.close()
    restarted = SQLiteLongTermStore(path)
    assert restarted.session_records("alice", "s1") == []
    assert [r.text for r in restarted.session_records("bob", "elsewhere")] == ["question 1", "answer 1"]
    restarted.close()


def test_a_deleted_file_refuses_each_exchange_at_once_and_says_why(tmp_path: Path) -> None:
    """The text is written on the request path: a file deleted under the store refuses each exchange to its
    caller (which logs it and still answers the turn), never acknowledging it into an unlinked file."""
    path = tmp_path / "sessions-longterm.db"
    ltm = local_ltm(path)
    try:
        say(ltm, "alice", "s1", 1, FACT)
        assert ltm.flush(30) and ltm.stored == 2
        remove_database(path)
        for turn in (2, 3):  # every exchange, not just the first
            with pytest.raises(LongTermUnavailable, match="was deleted or replaced while the server was running"):
                say(ltm, "alice", "s1", turn, f"note {turn}", epoch=0)
        assert ltm.stored == 2
    finally:
        ltm.close()
