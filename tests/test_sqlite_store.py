"""SQLite only: pooled connections, the file deleted or replaced under a running store, schema
migrations, and what listing and history cost."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from service import Assistant, ChatRequest
from core.errors import SessionChanged, StoreUnavailable
from core.settings import Settings
from core.sqlite import MAX_IDLE_CONNECTIONS
from memory.base import Summary
from memory.sqlite import MIGRATIONS, SQLiteStore
from tests.helpers.scripted_model import ScriptedModel


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_many_turns_do_not_leave_connections_open(tmp_path: Path) -> None:
    # Each turn on a thread of its own (as Strands' agent() runs every invocation, and as the rolling
    # summary's call still runs): a connection per thread used to stay open after each request, two files each.
    store = SQLiteStore(tmp_path / "sessions.db")
    settings = replace(Settings.from_env({}), session_db=tmp_path / "sessions.db", model_provider="echo",
                       rolling_summary=False)
    assistant = Assistant(settings, store, ScriptedModel(echo=True))
    assistant.chat(ChatRequest(message="warm up", actor_id="u", session_id="s0"))
    before = open_files()
    for i in range(60):
        bodies: list[dict[str, object]] = []
        request = ChatRequest(message=f"message {i}", actor_id="u", session_id=f"s{i % 3}")
        turn = threading.Thread(target=lambda r=request, b=bodies: b.append(assistant.chat(r)))
        turn.start()
        turn.join(30)
        assert bodies[0]["response"] == f"You said 'message {i}'"
    assert open_files() - before <= 2 * MAX_IDLE_CONNECTIONS
    assert [len(store.get_last_k_turns("u", f"s{n}", 100)) for n in range(3)] == [21, 20, 20]
    assistant.close()
    assert open_files() < before


def test_short_lived_threads_share_connections(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    before = open_files()

    def turn(n: int) -> None:
        store.add_turns("u", "s", [ConversationalMessage(f"q{n}", MessageRole.USER),
                                   ConversationalMessage(f"a{n}", MessageRole.ASSISTANT)])
        store.get_last_k_turns("u", "s", 3)

    for n in range(100):
        t = threading.Thread(target=turn, args=(n,))
        t.start()
        t.join()
    assert open_files() - before <= 2 * MAX_IDLE_CONNECTIONS
    assert len(store.list_events("u", "s")) == 100
    store.close()


# -- the file under a running store ---------------------------------------------------------------

def exchange(n: int) -> list[ConversationalMessage]:
    return [ConversationalMessage(f"question {n}", MessageRole.USER),
            ConversationalMessage(f"answer {n}", MessageRole.ASSISTANT)]


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_a_database_deleted_under_a_running_store_acknowledges_no_write(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    store = SQLiteStore(path)
    assert store.add_turns("u", "s", exchange(1)) == 1
    remove_database(path)
    for attempt in range(3):  # every write, not just the first: each would be lost at the next restart
        with pytest.raises(StoreUnavailable) as info:
            store.add_turns("u", "s", exchange(2 + attempt))
        assert info.value.status == 503
        assert info.value.message == (f"session store 'sqlite' is unavailable: the database file {path} was deleted "
                                      "or replaced while the server was running; restart the server")
    with pytest.raises(StoreUnavailable):
        store.delete_session("u", "s")
    with pytest.raises(StoreUnavailable):
        store.put_summary("u", "s", Summary("x", 1))
    store.close()
    restarted = SQLiteStore(path)
    assert restarted.load_window("u", "s", 10).message_count == 0  # nothing was acknowledged into the void
    assert restarted.add_turns("u", "s", exchange(1)) == 1
    restarted.close()


def test_a_database_replaced_under_a_running_store_acknowledges_no_write(tmp_path: Path) -> None:
    path, other = tmp_path / "sessions.db", tmp_path / "other.db"
    store = SQLiteStore(path)
    store.add_turns("u", "s", exchange(1))
    elsewhere = SQLiteStore(other)
    elsewhere.add_turns("u", "elsewhere", exchange(1))
    elsewhere.close()
    remove_database(path)
    os.replace(other, path)
    with pytest.raises(StoreUnavailable, match="deleted or replaced"):
        store.add_turns("u", "s", exchange(2))
    store.close()
    restarted = SQLiteStore(path)
    assert restarted.load_window("u", "s", 10).message_count == 0
    assert [i.session_id for i in restarted.list_sessions("u", 10).sessions] == ["elsewhere"]
    restarted.close()


# -- schema ------------------------------------------------------------------------------------------

def test_a_database_written_with_schema_1_opens_and_keeps_its_turns(tmp_path: Path) -> None:
    """Rows exactly as the first release wrote them; the new code migrates and carries on."""
    path = tmp_path / "sessions.db"
    db = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO sessions (pk, actor_id, session_id, turns, user_messages, messages, events, updated_at) "
               "VALUES (1, 'u', 'old', 2, 2, 4, 2, 1700000000.0)")
    db.executemany("INSERT INTO messages (session_pk, turn, seq, event_no, created_at, role, text) "
                   "VALUES (1, ?, ?, ?, ?, ?, ?)",
                   [(1, 1, 1, 1700000000.0, "USER", "question 1"), (1, 2, 1, 1700000000.0, "ASSISTANT", "answer 1"),
                    (2, 3, 2, 1700000000.5, "USER", "question 2"), (2, 4, 2, 1700000000.5, "ASSISTANT", "answer 2")])
    db.close()
    store = SQLiteStore(path)
    window = store.load_window("u", "old", 10)
    assert [[m.text for m in t] for t in window.turns] == [["question 1", "answer 1"], ["question 2", "answer 2"]]
    assert (window.generation, window.message_count) == (0, 2)
    [info] = store.list_sessions("u", 10).sessions
    assert (info.session_id, info.message_count, info.updated_at, info.first_message) == (
        "old", 2, 1700000000.0, "question 1")
    assert [(t.turn, t.created_at) for t in store.get_history("u", "old", 10).turns] == [
        (1, 1700000000.0), (2, 1700000000.5)]
    assert store.add_turns("u", "old", exchange(3), generation=0, idempotency_key="k") == 3
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


# -- cost ----------------------------------------------------------------------------------------------

def vm_steps(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch, read: Callable[[], object]) -> int:
    """SQLite virtual-machine instructions one read runs: a count of work, not a timing."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store.close()  # no pooled connection without the counter
    connect = sqlite3.connect

    def counting(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.set_progress_handler(count, 1)
        return db

    monkeypatch.setattr(sqlite3, "connect", counting)
    steps[0] = 0
    read()
    monkeypatch.setattr(sqlite3, "connect", connect)
    store.close()
    return steps[0]


def test_listing_an_actors_sessions_does_not_read_other_actors_sessions(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    for n in range(30):
        store.add_turns("alice", f"s{n}", exchange(n))
    alone = vm_steps(store, monkeypatch, lambda: store.list_sessions("alice", 10))
    for n in range(3000):
        store.add_turns(f"other{n % 300}", f"s{n}", exchange(n))
    crowded = vm_steps(store, monkeypatch, lambda: store.list_sessions("alice", 10))
    assert [i.session_id for i in store.list_sessions("alice", 3).sessions] == ["s29", "s28", "s27"]
    assert crowded < alone * 1.2


def test_a_history_page_costs_the_same_in_a_short_and_a_long_session(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    store.add_turns("u", "short", [m for n in range(20) for m in exchange(n)])
    store.add_turns("u", "long", [m for n in range(5000) for m in exchange(n)])
    short = vm_steps(store, monkeypatch, lambda: store.get_history("u", "short", 5, 12))
    long = vm_steps(store, monkeypatch, lambda: store.get_history("u", "long", 5, 2500))
    assert [t.turn for t in store.get_history("u", "long", 5, 2500).turns] == [2495, 2496, 2497, 2498, 2499]
    assert long < short * 1.2


def test_an_expired_session_id_used_again_after_a_restart_starts_a_new_generation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The start-up purge empties an expired session but keeps its row with the generation moved on, so the
    id's next turn 1 is not a (generation, turn) pair its expired life already had (long-term memory keys
    records by it); a writer that loaded the expired life is refused."""
    import time as time_module

    now = [1_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    store = SQLiteStore(tmp_path / "sessions.db", ttl=60)
    old = store.load_window("u", "s", 5)
    store.add_turns("u", "s", exchange(1), generation=old.generation)
    store.close()
    now[0] += 3600
    restarted = SQLiteStore(tmp_path / "sessions.db", ttl=60)  # purges expired sessions at start-up
    with pytest.raises(SessionChanged):
        restarted.add_turns("u", "s", exchange(2), generation=old.generation)
    window = restarted.load_window("u", "s", 5)
    assert (window.generation, window.message_count) == (old.generation + 1, 0)
    assert restarted.add_turns("u", "s", exchange(3), generation=window.generation) == 1
    restarted.close()


def test_a_tombstone_outlives_the_purge_of_expired_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time as time_module

    now = [1_000_000.0]
    monkeypatch.setattr(time_module, "time", lambda: now[0])
    store = SQLiteStore(tmp_path / "sessions.db", ttl=60)
    store.add_turns("u", "s", exchange(1))
    store.delete_session("u", "s")
    store.close()
    now[0] += 3600
    restarted = SQLiteStore(tmp_path / "sessions.db", ttl=60)  # purges expired sessions at start-up
    assert restarted.load_window("u", "s", 5).generation == 1  # a late writer from before the clear stays out
    with pytest.raises(SessionChanged):
        restarted.add_turns("u", "s", exchange(2), generation=0)
    restarted.close()
