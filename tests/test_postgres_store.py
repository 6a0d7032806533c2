"""MEMORY_BACKEND=postgres beyond the shared contract (tests/test_store_contract.py runs that): the schema
and its migrations, the round trips a turn costs, the start-up line for a bad DATABASE_URL, odd text.
A real PostgreSQL 16 (the pgserver wheel); every test in a schema of its own."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.settings import Settings
from memory import create_store
from memory.postgres import describe_postgres
from memory.postgres.schema import MIGRATIONS
from memory.postgres.store import PostgresStore
from tests.helpers.postgres import PostgresEngine, RoundTrips, exchange, schema_of, schema_url
from tests.helpers.server import ROOT, spare_port

@pytest.fixture
def url(postgres_schema: str) -> str:
    """A fresh schema on the run's PostgreSQL (``postgres_schema``), dropped after the test."""
    return postgres_schema


# -- the schema --------------------------------------------------------------------------------------

def test_replicas_starting_together_migrate_the_schema_once(url: str) -> None:
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def replica() -> None:
        try:
            start.wait(10)
            stores.append(PostgresStore(url))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert [s.add_turns("alice", "s1", exchange(n)) for n, s in enumerate(stores, 1)] == [1, 2, 3, 4]
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT component, version FROM memory_schema").fetchall() == \
                [("sessions", len(MIGRATIONS["sessions"]))]
    finally:
        for s in stores:
            s.close()


def test_a_schema_applied_ahead_serves_an_app_user_without_create_rights(postgres_engine: PostgresEngine,
                                                                          url: str) -> None:
    """``make db-schema`` (python -m memory.postgres migrate) by the owner; the app's own role may only
    read and write rows, and the app finds the schema current, so it runs no DDL."""
    done = subprocess.run([sys.executable, "-m", "memory.postgres", "migrate"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "sessions: 1 migration(s) applied" in done.stdout
    schema = schema_of(url)
    role = f"app_{schema}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    app_url = schema_url(postgres_engine.url.replace("postgres:@", f"{role}:@", 1), schema)
    try:
        store = PostgresStore(app_url)
        try:
            assert store.add_turns("alice", "s1", exchange(1)) == 1
            assert store.load_window("alice", "s1", 5).message_count == 1
        finally:
            store.close()
        again = subprocess.run([sys.executable, "-m", "memory.postgres", "migrate"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60, env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"})
        assert "sessions: 0 migration(s) applied" in again.stdout
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_the_schema_script_for_teams_that_apply_their_own_creates_what_the_app_needs(url: str) -> None:
    script = subprocess.run([sys.executable, "-m", "memory.postgres", "sql"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert script.returncode == 0, script.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(script.stdout)
    store = PostgresStore(url)
    try:
        assert store.add_turns("alice", "s1", exchange(1)) == 1
    finally:
        store.close()
    from longterm.base import MessageRecord
    from longterm.postgres_store import PostgresLongTermStore

    records = PostgresLongTermStore(url)  # the long-term table and its insert function came with the script
    try:
        assert records.write([MessageRecord("alice", "s1", 1, 0, "user", "I like tea", 1.7e9)]) == 1
        assert [r.text for r in records.list_records("alice", 5).records] == ["I like tea"]
        assert records.count_unembedded() == 1
    finally:
        records.close()


# -- what a turn costs -------------------------------------------------------------------------------

def test_a_plain_turn_is_two_round_trips(url: str) -> None:
    trips = RoundTrips()
    store = PostgresStore(url, configure=trips.trace)
    try:
        for n in range(1, 4):  # warm: the schema check, the pool's first connection, prepared statements
            store.add_turns("alice", "s1", exchange(n))
        before = trips.count()
        window = store.load_window("alice", "s1", 10)
        assert store.add_turns("alice", "s1", exchange(9), generation=window.generation, idempotency_key="k9") == 4
        assert trips.count() - before == 2
    finally:
        store.close()


def test_a_plain_turn_with_a_ttl_is_still_two_round_trips(url: str) -> None:
    trips = RoundTrips()
    store = PostgresStore(url, ttl=3600, configure=trips.trace)
    try:
        store.add_turns("alice", "s1", exchange(1))
        before = trips.count()
        window = store.load_window("alice", "s1", 10)  # restarts the expiry in the same call
        assert store.add_turns("alice", "s1", exchange(2), generation=window.generation) == 2
        assert trips.count() - before == 2
    finally:
        store.close()


# -- text PostgreSQL's text type cannot hold as is -------------------------------------------------------

@pytest.mark.parametrize("text", ["nul \x00 inside", "\x01starts with the escape mark", "\x01", "plain"])
def test_any_text_round_trips_exactly(url: str, text: str) -> None:
    store = PostgresStore(url)
    try:
        store.add_turns("alice", "s1", [ConversationalMessage(text, MessageRole.USER),
                                        ConversationalMessage(text, MessageRole.ASSISTANT)],
                        idempotency_key="k")
        [[user, reply]] = store.get_last_k_turns("alice", "s1", 1)
        assert (user.text, reply.text) == (text, text)
        assert store.find_request("alice", "s1", "k").reply == text
        assert store.list_sessions("alice", 10).sessions[0].first_message == text
        assert store.get_history("alice", "s1", 10).turns[0].user == text
    finally:
        store.close()


# -- settings and the start-up line ------------------------------------------------------------------

def start_up(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "agent.py")],
                          env={"PATH": "/usr/bin:/bin", "MODEL_PROVIDER": "echo", "MEMORY_BACKEND": "postgres",
                               **spare_port(), **env},  # beside a `make run` on 8080
                          capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize(("database_url", "needle"), [
    ("postgresql://app:s3cret@db.example:notaport/memory", "port 'notaport' is not a port number"),
    ("mysql://app:s3cret@db.example/memory", "must start with postgresql://"),
    ("postgresql://app:s3cret@db.example/memory?sslmode=sometimes", "sslmode='sometimes' is not one of"),
    ("postgresql://app:s3cret@db.example/memory?nosuch=1", "invalid URI query parameter"),
    ("", "MEMORY_BACKEND=postgres needs DATABASE_URL"),
])
def test_a_bad_database_url_stops_start_up_with_one_line_naming_it(tmp_path: Path, database_url: str,
                                                                   needle: str) -> None:
    result = start_up({"DATABASE_URL": database_url}, tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: ") and "DATABASE_URL" in line and needle in line
    assert "s3cret" not in line


def test_the_store_is_described_without_its_password(url: str) -> None:
    settings = replace(Settings.from_env({"MEMORY_BACKEND": "postgres",
                                          "DATABASE_URL": "postgresql://app:s3cret@db.example:5433/memory"}))
    assert describe_postgres(settings) == "postgres app@db.example:5433/memory pool 10 timeout 5s"
    assert "s3cret" not in repr(settings)
    store = create_store(replace(settings, database_url=url))
    try:
        assert store.name == "postgres" and store.add_turns("alice", "s1", exchange(1)) == 1
    finally:
        store.close()
