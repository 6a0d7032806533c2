"""Long-term memory's write path on PostgreSQL (the counterpart of ``test_longterm_durability.py``): text
committed on the request path, vectors later, a restart (or another replica) embeds what a process left, a
delete stays deleted when a vector arrives, reused session ids, and the per-record operations with random
public ids scoped to the actor. A real PostgreSQL 16 with pgvector (the pgserver wheel)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import psycopg
import pytest

from core.errors import InvalidCursor
from longterm.local import LocalLongTermMemory
from longterm.postgres import PostgresLongTermMemory
from longterm.postgres_store import PostgresLongTermStore
from tests.helpers.longterm_helpers import embedder, postgres_ltm, say, texts
from tests.helpers.postgres import RoundTrips
from tests.test_longterm_durability import CELLO, DISTRACTIONS, PARAPHRASE, records


class HeldVectors(PostgresLongTermStore):
    """The records' database, whose vectors wait for ``release`` before they are added: the background
    writer holds embedded records, about to give them their vectors."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.entered = threading.Event()
        self.release = threading.Event()

    def add_vectors(self, vectors: Sequence[tuple[str, np.ndarray]]) -> int:
        if not self.release.is_set():
            self.entered.set()
            assert self.release.wait(30)
        return super().add_vectors(vectors)


@pytest.fixture
def held(postgres_schema: str) -> Iterator[tuple[HeldVectors, LocalLongTermMemory]]:
    store = HeldVectors(postgres_schema)
    ltm = PostgresLongTermMemory(store, embedder())
    yield store, ltm
    store.release.set()
    ltm.close()


def test_an_exchange_is_found_by_its_keywords_before_it_has_vectors_and_by_meaning_after(
        held: tuple[HeldVectors, LocalLongTermMemory]) -> None:
    store, ltm = held
    for turn, text in enumerate(DISTRACTIONS, 1):
        say(ltm, "alice", "s1", turn, text)
    store.release.set()
    assert ltm.flush(60) and store.count_unembedded() == 0
    assert texts(ltm.search("alice", "tyres car", 1)) == [DISTRACTIONS[0]]  # alice is cached from here on
    store.release.clear()
    say(ltm, "alice", "s2", 1, CELLO, "A cellist in the family!")  # returns once the text is committed
    assert store.entered.wait(30)  # the writer holds the message's vector (the reply is not embedded)
    assert store.count_unembedded() == 1
    index = store.actor_index("alice")
    assert index.has_vector is not None and int((~index.has_vector).sum()) == 1  # the row came without one
    assert texts(ltm.search("alice", "Ingrid cello", 1)) == [CELLO]  # ranked by its keywords alone
    store.release.set()
    assert ltm.flush(60) and store.count_unembedded() == 0
    assert store.actor_index("alice").has_vector is None  # the cached actor took the vectors added since
    assert texts(ltm.search("alice", PARAPHRASE, 1)) == [CELLO]  # and now by meaning too


def test_record_exchange_stores_the_text_before_it_returns(held: tuple[HeldVectors, LocalLongTermMemory],
                                                           postgres_schema: str) -> None:
    """What ``record_exchange`` acknowledged is committed when it returns: another replica reads it at once."""
    _, ltm = held
    say(ltm, "alice", "s1", 1, CELLO)
    other = PostgresLongTermStore(postgres_schema)
    try:
        assert [r.text for r in other.session_records("alice", "s1")] == [CELLO, "Noted."]
    finally:
        other.close()


def test_a_requests_records_are_stored_in_one_round_trip(postgres_schema: str) -> None:
    trips = RoundTrips()
    store = PostgresLongTermStore(postgres_schema, configure=trips.trace)
    try:
        store.write(records("alice", "s1", 1, CELLO))  # warm: the schema check, the pool's first connection
        before = trips.count()
        assert store.write(records("alice", "s1", 2, "I collect stamps from Norway")) == 2
        assert trips.count() - before == 1
        assert store.write(records("alice", "s1", 2, "I collect stamps from Norway")) == 0  # a retry: refused
    finally:
        store.close()


def test_a_restart_embeds_what_a_killed_process_left_without_vectors(postgres_schema: str) -> None:
    killed = PostgresLongTermStore(postgres_schema)  # what record_exchange stored before the process was killed
    for turn, text in enumerate([CELLO, *DISTRACTIONS], 1):
        assert killed.write(records("alice", "s1", turn, text)) == 2
    assert killed.count_unembedded() == 8
    killed.close()
    ltm = postgres_ltm(postgres_schema)
    try:
        assert texts(ltm.search("alice", "Ingrid cello", 1)) == [CELLO]
        assert ltm.flush(60) and ltm.store.count_unembedded() == 0
        assert texts(ltm.search("alice", PARAPHRASE, 1)) == [CELLO]
    finally:
        ltm.close()


@pytest.mark.parametrize("delete", ["delete_record", "forget", "delete_session"])
def test_a_deleted_record_stays_deleted_when_its_vector_arrives(held: tuple[HeldVectors, LocalLongTermMemory],
                                                              delete: str) -> None:
    store, ltm = held
    say(ltm, "alice", "s1", 1, CELLO, "A cellist in the family!")
    assert store.entered.wait(30)  # the vectors are on their way
    if delete == "delete_record":
        for memory in ltm.search("alice", "Ingrid cello cellist family", 2):
            assert ltm.delete_record("alice", memory.record_id)
    elif delete == "forget":
        assert ltm.forget("alice") == 2
    else:
        assert ltm.delete_session("alice", "s1", generation=0) == 2
    store.release.set()
    assert ltm.flush(60)
    assert store.count("alice") == 0 and store.count_unembedded() == 0
    assert ltm.search("alice", "Ingrid cello", 5) == []
    assert ltm.list_records("alice").records == []


def test_two_replicas_embedding_the_same_record_store_one_vector(postgres_schema: str) -> None:
    first, second = PostgresLongTermStore(postgres_schema), PostgresLongTermStore(postgres_schema)
    try:
        first.write(records("alice", "s1", 1, CELLO)[:1])
        (taken,) = first.unembedded(10)
        assert second.unembedded(10) == [taken]  # both writers read it
        one, other = np.zeros(384, np.float32), np.zeros(384, np.float32)
        one[0], other[1] = 1.0, 1.0
        assert first.add_vectors([(taken.token, one)]) == 1
        assert second.add_vectors([(taken.token, other)]) == 0  # it has one already
        assert first.unembedded(10) == [] and np.array_equal(second.actor_index("alice").vectors[0], one)
    finally:
        first.close()
        second.close()


def test_a_session_id_reused_in_a_new_generation_stores_its_new_turns(postgres_schema: str) -> None:
    store = PostgresLongTermStore(postgres_schema)
    try:
        assert store.write(records("alice", "x", 1, "my locker code is 9911", generation=1)) == 2
        assert store.write(records("alice", "x", 1, "new content: my bike is blue", generation=2)) == 2
        assert store.write(records("alice", "x", 1, "new content: my bike is blue", generation=2)) == 0  # a retry
    finally:
        store.close()
    ltm = postgres_ltm(postgres_schema)
    try:
        assert [r.text for r in ltm.store.session_records("alice", "x")] == [
            "my locker code is 9911", "Noted.", "new content: my bike is blue", "Noted."]
        assert texts(ltm.search("alice", "locker code", 1)) == ["my locker code is 9911"]
        assert texts(ltm.search("alice", "bike blue", 1)) == ["new content: my bike is blue"]
    finally:
        ltm.close()


def test_delete_record_deletes_one_record_of_the_callers_actor_only(postgres_schema: str) -> None:
    ltm = postgres_ltm(postgres_schema)
    say(ltm, "alice", "s1", 1, CELLO, "A cellist in the family!")
    say(ltm, "alice", "s1", 2, "I collect stamps from Norway")
    say(ltm, "bob", "b1", 1, "bob plays the cello too")
    (cello,) = [m for m in ltm.search("alice", "Ingrid cello", 3) if m.text == CELLO]
    assert ltm.delete_record("bob", cello.record_id) is False  # another actor's id: as if unknown
    assert ltm.delete_record("nobody", cello.record_id) is False
    assert ltm.delete_record("alice", "0" * 32) is False
    assert ltm.delete_record("alice", "a\x00b") is False  # not a token (and not storable text)
    assert ltm.delete_record("alice", cello.record_id) is True
    assert ltm.delete_record("alice", cello.record_id) is False  # gone already
    ltm.close()
    again = postgres_ltm(postgres_schema)
    try:
        assert CELLO not in texts(again.search("alice", "Ingrid cello", 5))
        assert [m.text for m in again.list_records("alice").records] == [
            "Noted.", "I collect stamps from Norway", "A cellist in the family!"]
        assert texts(again.list_records("bob").records) == ["Noted.", "bob plays the cello too"]
    finally:
        again.close()


def test_list_records_pages_the_actors_records_newest_first(postgres_schema: str) -> None:
    ltm = postgres_ltm(postgres_schema)
    try:
        for turn in (1, 2, 3):
            say(ltm, "alice", "s1", turn, f"note {turn}", f"reply {turn}")
        say(ltm, "bob", "b1", 1, "bob's note")
        first = ltm.list_records("alice", limit=4)
        assert [m.text for m in first.records] == ["reply 3", "note 3", "reply 2", "note 2"]
        assert [(m.session_id, m.turn, m.role) for m in first.records[:2]] == [("s1", 3, "assistant"),
                                                                              ("s1", 3, "user")]
        second = ltm.list_records("alice", limit=4, cursor=first.next_cursor)
        assert [m.text for m in second.records] == ["reply 1", "note 1"] and second.next_cursor is None
        assert [m.text for m in ltm.list_records("alice", cursor="r" + "9" * 19).records][:1] == ["reply 3"]
        assert [m.text for m in ltm.list_records("bob").records] == ["Noted.", "bob's note"]
        assert ltm.list_records("nobody").records == []
        for forged in ["x", "r-1", "r" + "9" * 400, ""]:
            with pytest.raises(InvalidCursor):
                ltm.list_records("alice", cursor=forged)
    finally:
        ltm.close()


def test_record_ids_reveal_nothing_about_other_actors(postgres_schema: str) -> None:
    ltm = postgres_ltm(postgres_schema)
    try:
        say(ltm, "bob", "b", 1, "bob one")
        for turn in (1, 2, 3):
            say(ltm, "alice", "a", turn, f"alice {turn}")
        say(ltm, "bob", "b", 2, "bob two")
        ids = [m.record_id for m in ltm.list_records("bob").records]
        assert len(ids) == len(set(ids)) == 4
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
        assert ltm.list_records("bob", limit=2).next_cursor == "r3"  # bob's own numbering: 1..4, no gap
        found = ltm.search("bob", "bob", 4)  # (his two "Noted." replies collapse into one)
        assert {"bob one", "bob two"} <= set(texts(found)) and {m.record_id for m in found} <= set(ids)
    finally:
        ltm.close()


def test_the_schema_has_one_version_and_is_applied_once_by_replicas_starting_together(postgres_schema: str) -> None:
    stores: list[PostgresLongTermStore] = []
    threads = [threading.Thread(target=lambda: stores.append(PostgresLongTermStore(postgres_schema)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        with psycopg.connect(postgres_schema, autocommit=True) as conn:
            assert conn.execute("SELECT version FROM memory_schema WHERE component = 'longterm'").fetchone() == (1,)
            nullable = conn.execute("SELECT is_nullable FROM information_schema.columns WHERE table_schema = "
                                    "current_schema() AND table_name = 'ltm_records' AND column_name = 'embedding'"
                                    ).fetchone()
            assert nullable == ("YES",)
        assert all(s.count("alice") == 0 for s in stores)
    finally:
        for s in stores:
            s.close()


def test_close_embeds_for_at_most_its_bound_and_leaves_the_rest_for_the_next_start(
        postgres_schema: str, caplog: pytest.LogCaptureFixture) -> None:
    seeded = PostgresLongTermStore(postgres_schema)
    for start in range(1, 301, 50):
        seeded.write([r for turn in range(start, start + 50)
                      for r in records("alice", "s1", turn, f"gardening note {turn}: the roses need water")])
    seeded.close()
    store = PostgresLongTermStore(postgres_schema)
    ltm = PostgresLongTermMemory(store, embedder())
    ltm.drain_s = 0.3
    assert store.count_unembedded() > 100
    with caplog.at_level(logging.INFO, logger="longterm.local"):
        started = time.monotonic()
        ltm.close()
        took = time.monotonic() - started
    assert took < 0.3 + 2.5, f"close took {took:.1f} s"
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("long-term memory: closed")]
    left = int(re.search(r"records left without vectors: (\d+)", line).group(1))  # type: ignore[union-attr]
    assert 0 < left < 600
    again = postgres_ltm(postgres_schema)
    try:
        assert again.flush(120) and again.store.count_unembedded() == 0
        assert again.store.count("alice") == 600
    finally:
        again.close()
