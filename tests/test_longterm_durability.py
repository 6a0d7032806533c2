"""Long-term memory's write path: text durable on the request path, vectors later, restart backfill, a
bounded close, reused session ids, and the per-record operations (``delete_record``, ``list_records``,
public ids that reveal nothing). The served process under SIGKILL / SIGTERM: ``test_longterm_server.py``."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidCursor
from core.sqlite import SQLiteDatabase
from longterm.base import MessageRecord
from longterm.local import LocalLongTermMemory
from longterm.sqlite_schema import MIGRATIONS
from longterm.sqlite_store import SQLiteLongTermStore
from tests.helpers.longterm_helpers import embedder, local_ltm, say, texts

CELLO = "My daughter Ingrid plays the cello"
DISTRACTIONS = ["I bought new winter tyres for the car", "The weather in Lisbon was rainy all week",
                "We had grilled sardines for dinner"]
#: shares no content word with CELLO: only the vectors can find it
PARAPHRASE = "Which musical instrument does my kid practise?"


class HeldVectors(SQLiteLongTermStore):
    """The records' SQLite file, whose vectors wait for ``release`` before they are added: the background
    writer holds embedded records, about to give them their vectors."""

    def __init__(self, path: Path | None) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()

    def add_vectors(self, vectors: Sequence[tuple[str, np.ndarray]]) -> int:
        if not self.release.is_set():
            self.entered.set()
            assert self.release.wait(30)
        return super().add_vectors(vectors)


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[HeldVectors, LocalLongTermMemory]]:
    store = HeldVectors(tmp_path / "longterm.db")
    ltm = LocalLongTermMemory(store, embedder())
    yield store, ltm
    store.release.set()
    ltm.close()


def records(actor: str, session: str, turn: int, user: str, reply: str = "Noted.", generation: int = 0
            ) -> list[MessageRecord]:
    at = 1_700_000_000.0 + turn
    return [MessageRecord(actor, session, turn, 0, "user", user, at, generation),
            MessageRecord(actor, session, turn, 1, "assistant", reply, at, generation)]


# -- text now, vectors later ---------------------------------------------------------------------

def test_an_exchange_is_found_by_its_keywords_before_it_has_vectors_and_by_meaning_after(
        held: tuple[HeldVectors, LocalLongTermMemory]) -> None:
    store, ltm = held
    for turn, text in enumerate(DISTRACTIONS, 1):
        say(ltm, "alice", "s1", turn, text)
    store.release.set()
    assert ltm.flush(60) and store.count_unembedded() == 0
    store.release.clear()
    say(ltm, "alice", "s2", 1, CELLO, "A cellist in the family!")  # returns once the text is stored
    assert store.entered.wait(30)  # the writer holds the message's vector (a reply is found by its words only)
    assert store.count_unembedded() == 1
    assert texts(ltm.search("alice", "Ingrid cello", 1)) == [CELLO]  # ranked by its keywords alone
    store.release.set()
    assert ltm.flush(60) and store.count_unembedded() == 0
    assert texts(ltm.search("alice", PARAPHRASE, 1)) == [CELLO]  # and now by meaning too


def test_record_exchange_stores_the_text_before_it_returns(tmp_path: Path) -> None:
    """What ``record_exchange`` acknowledged is in the file when it returns: nothing waits in memory."""
    store = HeldVectors(tmp_path / "longterm.db")
    ltm = LocalLongTermMemory(store, embedder())
    try:
        say(ltm, "alice", "s1", 1, CELLO)
        other = SQLiteLongTermStore(tmp_path / "longterm.db")  # another process's view of the file
        assert [r.text for r in other.session_records("alice", "s1")] == [CELLO, "Noted."]
        other.close()
    finally:
        store.release.set()
        ltm.close()


def test_a_restart_embeds_what_a_killed_process_left_without_vectors(tmp_path: Path) -> None:
    path = tmp_path / "longterm.db"
    killed = SQLiteLongTermStore(path)  # what record_exchange stored before the process was killed
    for turn, text in enumerate([CELLO, *DISTRACTIONS], 1):
        assert killed.write(records("alice", "s1", turn, text)) == 2
    assert killed.count_unembedded() == 8
    killed.close()
    ltm = local_ltm(path)
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


def test_a_vector_computed_for_a_deleted_record_never_lands_on_a_newer_one(tmp_path: Path) -> None:
    """SQLite reuses the internal id of a deleted newest row: vectors are stored by the public id."""
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


# -- a session id reused after expiry --------------------------------------------------------------

def test_a_session_id_reused_in_a_new_generation_stores_its_new_turns(tmp_path: Path) -> None:
    """The session store starts a new generation for an id reused after expiry; its turn numbers start at 1
    again. Turn 1 of the new life must not collide with turn 1 of the old one."""
    store = SQLiteLongTermStore(tmp_path / "longterm.db")
    try:
        assert store.write(records("alice", "x", 1, "my locker code is 9911", generation=1)) == 2
        assert store.write(records("alice", "x", 1, "new content: my bike is blue", generation=2)) == 2
        assert store.write(records("alice", "x", 1, "new content: my bike is blue", generation=2)) == 0  # a retry
    finally:
        store.close()
    ltm = local_ltm(tmp_path / "longterm.db")
    try:
        assert [r.text for r in ltm.store.session_records("alice", "x")] == [
            "my locker code is 9911", "Noted.", "new content: my bike is blue", "Noted."]
        assert texts(ltm.search("alice", "locker code", 1)) == ["my locker code is 9911"]
        assert texts(ltm.search("alice", "bike blue", 1)) == ["new content: my bike is blue"]
    finally:
        ltm.close()


# -- one record: delete, list, ids ------------------------------------------------------------------

def test_delete_record_deletes_one_record_of_the_callers_actor_only(tmp_path: Path) -> None:
    ltm = local_ltm(tmp_path / "longterm.db")
    say(ltm, "alice", "s1", 1, CELLO, "A cellist in the family!")
    say(ltm, "alice", "s1", 2, "I collect stamps from Norway")
    (cello,) = [m for m in ltm.search("alice", "Ingrid cello", 3) if m.text == CELLO]
    assert ltm.delete_record("bob", cello.record_id) is False  # another actor's id: as if unknown
    assert ltm.delete_record("alice", "0" * 32) is False
    assert ltm.delete_record("alice", cello.record_id) is True
    assert ltm.delete_record("alice", cello.record_id) is False  # gone already
    ltm.close()
    again = local_ltm(tmp_path / "longterm.db")
    try:
        assert CELLO not in texts(again.search("alice", "Ingrid cello", 5))
        assert [m.text for m in again.list_records("alice").records] == [
            "Noted.", "I collect stamps from Norway", "A cellist in the family!"]
    finally:
        again.close()


def test_list_records_pages_the_actors_records_newest_first(tmp_path: Path) -> None:
    ltm = local_ltm(tmp_path / "longterm.db")
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
        assert [m.text for m in ltm.list_records("bob").records] == ["Noted.", "bob's note"]
        assert ltm.list_records("nobody").records == []
        for forged in ["x", "r-1", "r" + "9" * 400, "r\u0661\u0662", "", 7, "r1\udc80"]:
            with pytest.raises(InvalidCursor):
                ltm.list_records("alice", cursor=forged)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            ltm.list_records("alice", limit=0)
    finally:
        ltm.close()


def test_record_ids_reveal_nothing_about_other_actors(tmp_path: Path) -> None:
    """Bob's ids (and his list cursor) say nothing of the turns alice had between his."""
    ltm = local_ltm(tmp_path / "longterm.db")
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
        found = {m.record_id for m in ltm.search("bob", "bob", 4)}
        assert found and found <= set(ids)  # the search hands out the same ids (near-duplicates may collapse)
    finally:
        ltm.close()


def test_a_file_from_the_previous_release_gets_public_ids_and_paging(tmp_path: Path) -> None:
    path = tmp_path / "longterm.db"
    old = SQLiteDatabase(path, migrations=MIGRATIONS[:1])  # the schema of the release before this one
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
        listed = ltm.list_records("alice", limit=1)
        assert [m.text for m in listed.records] == ["I moved to Porto"] and listed.next_cursor == "r2"
        assert [m.text for m in ltm.list_records("alice", cursor=listed.next_cursor).records] == ["I like tea"]
        assert all(re.fullmatch(r"[0-9a-f]{32}", m.record_id) for m in ltm.list_records("alice").records)
        assert ltm.store.count_unembedded() == 0
        say(ltm, "alice", "s2", 1, "I collect stamps")  # numbering goes on after the migrated records
        assert ltm.list_records("alice", limit=1).next_cursor == "r4"
    finally:
        ltm.close()


# -- a bounded close ---------------------------------------------------------------------------------

def test_close_embeds_for_at_most_its_bound_and_leaves_the_rest_for_the_next_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "longterm.db"
    seeded = SQLiteLongTermStore(path)
    for turn in range(1, 301):
        seeded.write(records("alice", "s1", turn, f"gardening note {turn}: the roses need water"))
    seeded.close()
    store = SQLiteLongTermStore(path)
    ltm = LocalLongTermMemory(store, embedder(), drain_s=0.3)
    backlog = store.count_unembedded()
    assert backlog > 100  # ≈ 5 ms a text: far more than 0.3 s of work
    with caplog.at_level(logging.INFO, logger="longterm.local"):
        started = time.monotonic()
        ltm.close()
        took = time.monotonic() - started
    assert took < 0.3 + 2.5, f"close took {took:.1f} s"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("long-term memory: closed")]
    assert len(lines) == 1
    left = int(re.search(r"records left without vectors: (\d+)", lines[0]).group(1))  # type: ignore[union-attr]
    assert 0 < left < 600
    again = local_ltm(path)
    try:
        assert again.store.count_unembedded() <= left  # (its writer has started on them already)
        assert again.flush(120) and again.store.count_unembedded() == 0
        assert again.store.count("alice") == 600
    finally:
        again.close()
