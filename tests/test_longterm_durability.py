"""Long-term memory's write path, on both stores that keep records (a SQLite file, and a real PostgreSQL 16 with
pgvector from the pgserver wheel): text durable on the request path, vectors later, a restart (or another replica)
embeds what a process left, a delete stays deleted when a vector arrives, a bounded close, reused session ids, and
the per-record operations (``delete_record``, ``list_records``, random public ids scoped to the actor).

Each shared test runs once per store (``backend``: ids ``sqlite`` and ``postgres``); then what only one store has:
PostgreSQL's one round trip per request, replicas racing to embed a record or to apply the schema; SQLite's
internal ids reused after a delete and a file from the previous release. The served process under SIGKILL /
SIGTERM: ``test_longterm_server.py``."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from core.errors import InvalidCursor
from core.sqlite import SQLiteDatabase
from longterm.base import MessageRecord
from longterm.local import LocalLongTermMemory
from longterm.postgres import PostgresLongTermMemory
from longterm.postgres_store import PostgresLongTermStore
from longterm.sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS
from memory.postgres.schema import MIGRATIONS
from longterm.sqlite_store import SQLiteLongTermStore
from tests.helpers.longterm_helpers import embedder, local_ltm, say, texts
from tests.helpers.postgres import RoundTrips

CELLO = "My daughter Ingrid plays the cello"
DISTRACTIONS = ["I bought new winter tyres for the car", "The weather in Lisbon was rainy all week",
                "We had grilled sardines for dinner"]
#: shares no content word with CELLO: only the vectors can find it
PARAPHRASE = "Which musical instrument does my kid practise?"


class HeldVectors:
    """A records store whose vectors wait for ``release`` before they are added: the background writer holds
    embedded records, about to give them their vectors. Mixed into each backend's store class below."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.release = threading.Event()

    def add_vectors(self, vectors: Sequence[tuple[str, np.ndarray]]) -> int:
        if not self.release.is_set():
            self.entered.set()
            assert self.release.wait(30)
        return super().add_vectors(vectors)  # type: ignore[misc]


class HeldSQLiteVectors(HeldVectors, SQLiteLongTermStore):
    """The records' SQLite file, its vectors held."""


class HeldPostgresVectors(HeldVectors, PostgresLongTermStore):
    """The records' PostgreSQL schema, its vectors held."""


Store = SQLiteLongTermStore | PostgresLongTermStore
Held = HeldSQLiteVectors | HeldPostgresVectors


@dataclass
class Backend:
    """One store that keeps long-term records. Every ``store()`` / ``memory()`` opens the same file (schema):
    another process after a restart, or another replica."""

    name: str
    where: Path | str  # the SQLite file, or the URL of the test's PostgreSQL schema
    store_class: type[SQLiteLongTermStore] | type[PostgresLongTermStore]
    held_class: type[HeldSQLiteVectors] | type[HeldPostgresVectors]
    memory_class: type[LocalLongTermMemory]

    def store(self) -> Store:
        return self.store_class(self.where)  # type: ignore[arg-type]

    def held(self) -> Held:
        return self.held_class(self.where)  # type: ignore[arg-type]

    def memory(self, store: Store | None = None) -> LocalLongTermMemory:
        """Long-term memory over ``store`` (default: the store opened again), as the application builds it."""
        return self.memory_class(self.store() if store is None else store, embedder())  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "postgres":  # skips (fails under REQUIRE_TEST_SERVICES) when PostgreSQL cannot start
        return Backend("postgres", request.getfixturevalue("postgres_schema"), PostgresLongTermStore,
                       HeldPostgresVectors, PostgresLongTermMemory)
    return Backend("sqlite", tmp_path / "longterm.db", SQLiteLongTermStore, HeldSQLiteVectors, LocalLongTermMemory)


@pytest.fixture
def held(backend: Backend) -> Iterator[tuple[Held, LocalLongTermMemory]]:
    store = backend.held()
    ltm = backend.memory(store)
    yield store, ltm
    store.release.set()
    ltm.close()


def records(actor: str, session: str, turn: int, user: str, reply: str = "Noted.", generation: int = 0
            ) -> list[MessageRecord]:
    at = 1_700_000_000.0 + turn
    return [MessageRecord(actor, session, turn, 0, "user", user, at, generation),
            MessageRecord(actor, session, turn, 1, "assistant", reply, at, generation)]


# -- text now, vectors later ---------------------------------------------------------------------

@pytest.mark.parametrize("cached", [False, True], ids=["uncached", "cached"])
def test_an_exchange_is_found_by_its_keywords_before_it_has_vectors_and_by_meaning_after(
        held: tuple[Held, LocalLongTermMemory], cached: bool) -> None:
    """``cached``: the actor is in the store's cache before the exchange (the new row and, later, its vector are
    added to it); else the actor is loaded whole while the row has no vector yet."""
    store, ltm = held
    for turn, text in enumerate(DISTRACTIONS, 1):
        say(ltm, "alice", "s1", turn, text)
    store.release.set()
    assert ltm.flush(60) and store.count_unembedded() == 0
    if cached:
        assert texts(ltm.search("alice", "tyres car", 1)) == [DISTRACTIONS[0]]  # alice is cached from here on
    store.release.clear()
    say(ltm, "alice", "s2", 1, CELLO, "A cellist in the family!")  # returns once the text is stored
    assert store.entered.wait(30)  # the writer holds the message's vector (a reply is found by its words only)
    assert store.count_unembedded() == 1
    index = store.actor_index("alice")
    assert index.has_vector is not None and int((~index.has_vector).sum()) == 1  # the row came without one
    assert texts(ltm.search("alice", "Ingrid cello", 1)) == [CELLO]  # ranked by its keywords alone
    store.release.set()
    assert ltm.flush(60) and store.count_unembedded() == 0
    assert store.actor_index("alice").has_vector is None  # the cached actor took the vectors added since
    assert texts(ltm.search("alice", PARAPHRASE, 1)) == [CELLO]  # and now by meaning too


def test_record_exchange_stores_the_text_before_it_returns(held: tuple[Held, LocalLongTermMemory],
                                                           backend: Backend) -> None:
    """What ``record_exchange`` acknowledged is stored (committed) when it returns: nothing waits in memory;
    another process's (replica's) view of the file (database) reads it at once."""
    _, ltm = held
    say(ltm, "alice", "s1", 1, CELLO)
    other = backend.store()
    try:
        assert [r.text for r in other.session_records("alice", "s1")] == [CELLO, "Noted."]
    finally:
        other.close()


def test_a_restart_embeds_what_a_killed_process_left_without_vectors(backend: Backend) -> None:
    killed = backend.store()  # what record_exchange stored before the process was killed
    for turn, text in enumerate([CELLO, *DISTRACTIONS], 1):
        assert killed.write(records("alice", "s1", turn, text)) == 2
    assert killed.count_unembedded() == 8
    killed.close()
    ltm = backend.memory()
    try:
        assert texts(ltm.search("alice", "Ingrid cello", 1)) == [CELLO]
        assert ltm.flush(60) and ltm.store.count_unembedded() == 0
        assert texts(ltm.search("alice", PARAPHRASE, 1)) == [CELLO]
    finally:
        ltm.close()


@pytest.mark.parametrize("delete", ["delete_record", "forget", "delete_session"])
def test_a_deleted_record_stays_deleted_when_its_vector_arrives(held: tuple[Held, LocalLongTermMemory],
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


# -- a session id reused after expiry --------------------------------------------------------------

def test_a_session_id_reused_in_a_new_generation_stores_its_new_turns(backend: Backend) -> None:
    """The session store starts a new generation for an id reused after expiry; its turn numbers start at 1
    again. Turn 1 of the new life must not collide with turn 1 of the old one."""
    store = backend.store()
    try:
        assert store.write(records("alice", "x", 1, "my locker code is 9911", generation=1)) == 2
        assert store.write(records("alice", "x", 1, "new content: my bike is blue", generation=2)) == 2
        assert store.write(records("alice", "x", 1, "new content: my bike is blue", generation=2)) == 0  # a retry
    finally:
        store.close()
    ltm = backend.memory()
    try:
        assert [r.text for r in ltm.store.session_records("alice", "x")] == [
            "my locker code is 9911", "Noted.", "new content: my bike is blue", "Noted."]
        assert texts(ltm.search("alice", "locker code", 1)) == ["my locker code is 9911"]
        assert texts(ltm.search("alice", "bike blue", 1)) == ["new content: my bike is blue"]
    finally:
        ltm.close()


def test_a_cleared_session_id_used_again_after_its_store_forgot_the_generation_stores_its_new_life(
        backend: Backend) -> None:
    """Redis and DynamoDB keep a cleared session's generation 7 days (any store with SESSION_TTL at least
    that): the id used again later numbers its generations from 0 again. The delete's tombstone refuses the
    late records of the cleared life, made around the delete, not the records of that new life."""
    from longterm.base import LATE_RECORD_S

    store = backend.store()
    try:
        assert store.write(records("alice", "x", 1, "my old locker code is 9911")) == 2
        assert store.delete_session("alice", "x", generation=0) == 2
        deleted_at = time.time()
        late = [replace(r, created_at=deleted_at + 5.0) for r in records("alice", "x", 2, "a turn begun before the clear")]
        assert store.write(late) == 0  # in flight during the clear: refused, as ever
        new_life = [replace(r, created_at=deleted_at + LATE_RECORD_S + 60.0)
                    for r in records("alice", "x", 1, "new life: my bike is blue")]
        assert store.write(new_life) == 2  # generation 0 again, long after the delete: stored
    finally:
        store.close()
    ltm = backend.memory()
    try:
        assert [r.text for r in ltm.store.session_records("alice", "x")] == ["new life: my bike is blue", "Noted."]
        assert texts(ltm.search("alice", "bike blue", 1)) == ["new life: my bike is blue"]
        assert ltm.delete_session("alice", "x", generation=0) == 2  # and a clear of the new life deletes it
    finally:
        ltm.close()


# -- one record: delete, list, ids ------------------------------------------------------------------

def test_delete_record_deletes_one_record_of_the_callers_actor_only(backend: Backend) -> None:
    ltm = backend.memory()
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
    again = backend.memory()
    try:
        assert CELLO not in texts(again.search("alice", "Ingrid cello", 5))
        assert [m.text for m in again.list_records("alice").records] == [
            "Noted.", "I collect stamps from Norway", "A cellist in the family!"]
        assert texts(again.list_records("bob").records) == ["Noted.", "bob plays the cello too"]
    finally:
        again.close()


def test_list_records_pages_the_actors_records_newest_first(backend: Backend) -> None:
    ltm = backend.memory()
    try:
        for turn in (1, 2, 3):
            say(ltm, "alice", "s1", turn, f"note {turn}", f"reply {turn}")
        say(ltm, "bob", "b1", 1, "bob's note")
        first = ltm.list_records("alice", limit=4)
        assert [m.text for m in first.records] == ["reply 3", "note 3", "reply 2", "note 2"]
        assert [(m.session_id, m.turn, m.role) for m in first.records[:2]] == [("s1", 3, "assistant"),
                                                                              ("s1", 3, "user")]
        assert first.next_cursor is not None
        second = ltm.list_records("alice", limit=4, cursor=first.next_cursor)
        assert [m.text for m in second.records] == ["reply 1", "note 1"] and second.next_cursor is None
        assert [m.text for m in ltm.list_records("alice", cursor="r" + "9" * 19).records][:1] == ["reply 3"]
        assert [m.text for m in ltm.list_records("bob").records] == ["Noted.", "bob's note"]
        assert ltm.list_records("nobody").records == []
        for forged in ["x", "r-1", "r" + "9" * 400, "r\u0661\u0662", "", 7, "r1\udc80"]:
            with pytest.raises(InvalidCursor):
                ltm.list_records("alice", cursor=forged)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            ltm.list_records("alice", limit=0)
    finally:
        ltm.close()


def test_record_ids_reveal_nothing_about_other_actors(backend: Backend) -> None:
    """Bob's ids (and his list cursor) say nothing of the turns alice had between his."""
    ltm = backend.memory()
    try:
        say(ltm, "bob", "b", 1, "bob one")
        for turn in (1, 2, 3):
            say(ltm, "alice", "a", turn, f"alice {turn}")
        say(ltm, "bob", "b", 2, "bob two")
        ids = [m.record_id for m in ltm.list_records("bob").records]
        assert len(ids) == len(set(ids)) == 4
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
        page = ltm.list_records("bob", limit=2)
        assert page.next_cursor == "r3"  # bob's own third record: his records are numbered 1..4, no gap
        found = ltm.search("bob", "bob", 4)  # (his two "Noted." replies may collapse into one)
        # the search hands out the same ids
        assert {"bob one", "bob two"} <= set(texts(found)) and {m.record_id for m in found} <= set(ids)
    finally:
        ltm.close()


# -- a bounded close ---------------------------------------------------------------------------------

def test_close_embeds_for_at_most_its_bound_and_leaves_the_rest_for_the_next_start(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    seeded = backend.store()
    for start in range(1, 301, 50):
        seeded.write([r for turn in range(start, start + 50)
                      for r in records("alice", "s1", turn, f"gardening note {turn}: the roses need water")])
    seeded.close()
    store = backend.store()
    ltm = backend.memory(store)
    ltm.drain_s = 0.3
    backlog = store.count_unembedded()
    assert backlog > 100  # ≈ 5 ms a text: far more than 0.3 s of work
    with caplog.at_level(logging.INFO, logger="longterm.local"):
        started = time.monotonic()
        ltm.close()
        took = time.monotonic() - started
    assert took < 0.3 + 2.5, f"close took {took:.1f} s"
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("long-term memory: closed")]
    left = int(re.search(r"records left without vectors: (\d+)", line).group(1))  # type: ignore[union-attr]
    assert 0 < left < 600
    again = backend.memory()
    try:
        assert again.store.count_unembedded() <= left  # (its writer has started on them already)
        assert again.flush(120) and again.store.count_unembedded() == 0
        assert again.store.count("alice") == 600
    finally:
        again.close()


# -- PostgreSQL only: one round trip a request, replicas racing --------------------------------------

def test_a_requests_records_are_stored_in_one_round_trip(postgres_schema: str) -> None:
    """PostgreSQL only: a request's records cost one round trip to the server (SQLite has no server)."""
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


def test_two_replicas_embedding_the_same_record_store_one_vector(postgres_schema: str) -> None:
    """PostgreSQL only: every replica's writer reads the one work list; the first vector added wins."""
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


def test_the_schema_has_one_version_and_is_applied_once_by_replicas_starting_together(postgres_schema: str) -> None:
    """PostgreSQL only: replicas starting at once apply the schema once."""
    stores: list[PostgresLongTermStore] = []
    threads = [threading.Thread(target=lambda: stores.append(PostgresLongTermStore(postgres_schema)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        with psycopg.connect(postgres_schema, autocommit=True) as conn:
            assert conn.execute("SELECT version FROM memory_schema WHERE component = 'longterm'").fetchone() == (
                len(MIGRATIONS["longterm"]),)  # every migration applied, once
            nullable = conn.execute("SELECT is_nullable FROM information_schema.columns WHERE table_schema = "
                                    "current_schema() AND table_name = 'ltm_records' AND column_name = 'embedding'"
                                    ).fetchone()
            assert nullable == ("YES",)
        assert all(s.count("alice") == 0 for s in stores)
    finally:
        for s in stores:
            s.close()


# -- SQLite only: internal ids reused, a file from the previous release ------------------------------

def test_a_vector_computed_for_a_deleted_record_never_lands_on_a_newer_one(tmp_path: Path) -> None:
    """SQLite only: SQLite reuses the internal id of a deleted newest row (PostgreSQL's ids are never reused);
    vectors are stored by the public id."""
    store = SQLiteLongTermStore(tmp_path / "longterm.db")
    try:
        store.write(records("alice", "s1", 1, CELLO)[:1])
        (taken,) = store.unembedded(10)  # the writer read it and is embedding it...
        assert store.delete_record("alice", taken.token)  # ...when it is deleted
        store.write(records("alice", "s2", 1, "I collect stamps from Norway")[:1])
        (newer,) = store.unembedded(10)
        assert newer.id == taken.id and newer.token != taken.token  # the internal id came back
        assert store.add_vectors([(taken.token, np.ones(384, np.float32) / np.sqrt(384))]) == 0
        assert store.unembedded(10) == [newer]
    finally:
        store.close()


def test_a_file_from_the_previous_release_gets_public_ids_and_paging(tmp_path: Path) -> None:
    """SQLite only: a records file written by the release before public ids (PostgreSQL's schema began with them)."""
    path = tmp_path / "longterm.db"
    old = SQLiteDatabase(path, migrations=SQLITE_MIGRATIONS[:1])  # the schema of the release before this one
    vector = np.zeros(384, "<f4")
    vector[0] = 1.0
    with old.write() as db:
        for rowid, (actor, text) in enumerate([("alice", "I like tea"), ("bob", "bob's bike"),
                                               ("alice", "I moved to Porto")], 1):
            db.execute("INSERT INTO ltm_records (id, actor_id, session_id, generation, turn, seq, role, speaker, "
                       "text, caption, created_at, vector) VALUES (?, ?, 's', 0, ?, 0, 'user', '', ?, '', 0, ?)",
                       (rowid, actor, rowid, text, vector.tobytes()))
            db.execute("INSERT INTO ltm_fts (rowid, text, caption, prev, next, date, owner) "
                       "VALUES (?, ?, '', '', '', '', '')", (rowid, text))
            db.execute("INSERT INTO ltm_actors (actor_id, version) VALUES (?, 1) ON CONFLICT (actor_id) "
                       "DO UPDATE SET version = version + 1", (actor,))
    old.close()
    ltm = local_ltm(path)
    try:
        with ltm.store._db.connection() as db:  # migration 4: the old keyword index, its copies of the text, gone
            assert db.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'ltm_fts%'").fetchone()[0] == 0
        listed = ltm.list_records("alice", limit=1)
        assert [m.text for m in listed.records] == ["I moved to Porto"] and listed.next_cursor == "r2"
        assert [m.text for m in ltm.list_records("alice", cursor=listed.next_cursor).records] == ["I like tea"]
        assert all(re.fullmatch(r"[0-9a-f]{32}", m.record_id) for m in ltm.list_records("alice").records)
        assert ltm.store.count_unembedded() == 0
        say(ltm, "alice", "s2", 1, "I collect stamps")  # numbering goes on after the migrated records
        assert ltm.list_records("alice", limit=1).next_cursor == "r4"
    finally:
        ltm.close()
