"""MEMORY_BACKEND=postgres when the database fails: stopped (503 naming the store, /ping up, back by itself),
a connection killed in the middle of a turn (nothing half-written), the pool exhausted (a bounded wait,
then 503). A real PostgreSQL 16 (the pgserver wheel): a private one for the outage, which stops it."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable

import psycopg
import pytest

from core.errors import StoreUnavailable
from memory.postgres.store import PostgresStore
from tests.helpers.postgres import PostgresEngine, exchange
from tests.helpers.server import Server

@pytest.fixture
def url(postgres_schema: str) -> str:
    """A fresh schema on the run's PostgreSQL (``postgres_schema``), dropped after the test."""
    return postgres_schema


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def backend_waiting_on_a_lock(admin: psycopg.Connection, query_part: str) -> int | None:
    """The pid of the server process running ``query_part`` and waiting on a lock, if one is."""
    row = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s AND pid <> "
        "pg_backend_pid()", (f"%{query_part}%",)).fetchone()
    return row[0] if row else None


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as e:  # noqa: BLE001 - the test asserts on it
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_connection_killed_in_the_middle_of_a_turn_leaves_nothing_half_written(url: str) -> None:
    """The turn's messages and counters are written, its idempotency record waits on another transaction's
    row: the server process is terminated right there. The turn fails with a 503; nothing of it stays."""
    store = PostgresStore(url)
    try:
        assert store.add_turns("alice", "s1", exchange(1)) == 1
        with psycopg.connect(url, autocommit=True) as holder, psycopg.connect(url, autocommit=True) as admin:
            [pk] = holder.execute("SELECT pk FROM memory_sessions WHERE session_id = 's1'").fetchone()
            holder.execute("BEGIN")
            holder.execute("INSERT INTO memory_requests VALUES (%s, 'k2', 0, 0, 0, 0, 0)", (pk,))
            thread, outcome = in_thread(lambda: store.add_turns("alice", "s1", exchange(2), idempotency_key="k2"))
            pid = wait_for(lambda: backend_waiting_on_a_lock(admin, "memory_add_turns"), "the turn to block")
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            thread.join(20)
            holder.execute("ROLLBACK")
        error = outcome["error"]
        assert isinstance(error, StoreUnavailable) and error.status == 503 and error.store == "postgres"
        assert [[m.text for m in e.messages] for e in store.list_events("alice", "s1")] == [["question 1", "answer 1"]]
        assert store.load_window("alice", "s1", 10).message_count == 1
        assert store.find_request("alice", "s1", "k2") is None
        assert store.add_turns("alice", "s1", exchange(2), idempotency_key="k2") == 2  # the client's retry
    finally:
        store.close()


def test_an_exhausted_pool_is_a_bounded_wait_then_a_503_and_then_it_serves_again(url: str) -> None:
    store = PostgresStore(url, pool_size=1, pool_timeout=0.5)
    try:
        assert store.add_turns("alice", "s1", exchange(1)) == 1
        with psycopg.connect(url, autocommit=True) as holder, psycopg.connect(url, autocommit=True) as admin:
            holder.execute("BEGIN")
            holder.execute("SELECT 1 FROM memory_sessions WHERE session_id = 's1' FOR UPDATE")
            thread, outcome = in_thread(lambda: store.add_turns("alice", "s1", exchange(2)))  # holds the one connection
            wait_for(lambda: backend_waiting_on_a_lock(admin, "memory_add_turns"), "the turn to hold the connection")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as info:
                store.load_window("alice", "other", 10)
            waited = time.monotonic() - started
            holder.execute("ROLLBACK")
        thread.join(20)
        assert 0.4 < waited < 5
        assert info.value.store == "postgres" and "pool" in info.value.message
        assert outcome == {"result": 2}
        assert store.load_window("alice", "other", 10).message_count == 0
    finally:
        store.close()


def test_a_turn_stuck_on_a_lock_is_a_503_after_the_statement_timeout_not_a_hang(url: str) -> None:
    """Another transaction (an operator's, a stuck job's) holds the session row: the turn waits at most
    ``DATABASE_STATEMENT_TIMEOUT_S``, stores nothing, and the session serves again once the lock is gone."""
    store = PostgresStore(url, statement_timeout=0.5)
    try:
        assert store.add_turns("alice", "s1", exchange(1)) == 1
        with psycopg.connect(url, autocommit=True) as holder:
            holder.execute("BEGIN")
            holder.execute("SELECT 1 FROM memory_sessions WHERE session_id = 's1' FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as info:
                store.add_turns("alice", "s1", exchange(2))
            waited = time.monotonic() - started
            assert store.add_turns("alice", "other", exchange(1)) == 1  # other sessions are not held up
            holder.execute("ROLLBACK")
        assert 0.4 < waited < 5
        assert info.value.store == "postgres" and "statement timeout" in info.value.message
        assert store.load_window("alice", "s1", 10).message_count == 1
        assert store.add_turns("alice", "s1", exchange(2)) == 2
    finally:
        store.close()


def test_postgres_stopped_is_a_503_naming_the_store_ping_stays_up_and_service_returns_by_itself() -> None:
    """The real server process over a private PostgreSQL that is stopped and started again."""
    engine = PostgresEngine().start()
    app = Server({"MEMORY_BACKEND": "postgres", "DATABASE_URL": engine.url, "DATABASE_POOL_TIMEOUT_S": "1"}).start()
    try:
        assert app.invoke({"message": "one"}, "conv1")[1]["message_count"] == 1
        assert app.invoke({"message": "two"}, "conv1")[1]["message_count"] == 2
        engine.pause()
        started = time.monotonic()
        status, body = app.invoke({"message": "three"}, "conv1")
        assert status == 503 and time.monotonic() - started < 10
        assert set(body) == {"error"} and "session store 'postgres' is unavailable" in body["error"]
        assert app.process.poll() is None
        with urllib.request.urlopen(f"{app.url}/ping", timeout=5) as r:
            assert r.status == 200
        engine.resume()

        def answered() -> tuple[int, dict] | None:
            status, body = app.invoke({"message": "three"}, "conv1")
            return (status, body) if status == 200 else None

        status, body = wait_for(answered, "the service to return", timeout=30)
        assert (body["message_count"], body["history_length"]) == (3, 2)  # nothing lost, nothing doubled
        assert app.invoke({"message": "other"}, "conv2")[1]["message_count"] == 1
    finally:
        app.stop()
        engine.stop()
