"""Long-term memory on PostgreSQL beyond the shared contract (tests/test_longterm_contract.py runs that):
replicas on one database, a clean close that drains the queue, a restart, the records' table (pgvector),
the factory and its start-up line. A real PostgreSQL 16 with pgvector (the pgserver wheel)."""

from __future__ import annotations

import time

import numpy as np
import psycopg
import pytest

from core.errors import LongTermUnavailable
from core.settings import Settings
from longterm.postgres import create_postgres_long_term
from tests.helpers.longterm_helpers import embedder, postgres_ltm, say, texts
from tests.helpers.postgres import PostgresEngine

FACT = "I am allergic to peanuts, please remember that"


def test_nothing_queued_is_lost_on_a_clean_close_and_records_survive_a_restart(postgres_schema: str) -> None:
    ltm = postgres_ltm(postgres_schema)
    for turn in range(1, 41):
        say(ltm, "alice", "s1", turn, f"note number {turn} about gardening")
    ltm.close()  # no flush: close drains the queue
    reopened = postgres_ltm(postgres_schema)
    try:
        assert reopened.store.count("alice") == 80
        assert reopened.search("alice", "note number 17 gardening", 1)[0].text == "note number 17 about gardening"
    finally:
        reopened.close()


def test_a_second_replica_sees_writes_and_deletes_of_the_first(postgres_schema: str) -> None:
    first, second = postgres_ltm(postgres_schema), postgres_ltm(postgres_schema)
    try:
        say(first, "alice", "s1", 1, FACT)
        first.flush()
        assert texts(second.search("alice", "peanuts", 1)) == [FACT]  # loads alice into second's cache
        say(first, "alice", "s1", 2, "I also avoid shellfish")
        first.flush()
        assert texts(second.search("alice", "shellfish", 1)) == ["I also avoid shellfish"]  # only the new rows read
        epoch = second.epoch("alice")
        first.forget("alice")
        say(second, "alice", "s2", 1, "second replica, turn begun before the forget: peanuts", epoch=epoch)
        second.flush()
        assert second.search("alice", "peanuts shellfish", 10) == []
        assert first.search("alice", "peanuts shellfish", 10) == []
        assert second.refused == 2
    finally:
        first.close()
        second.close()


def test_records_keep_their_embedding_in_a_pgvector_column(postgres_schema: str) -> None:
    ltm = postgres_ltm(postgres_schema)
    try:
        say(ltm, "alice", "s1", 1, FACT)
        ltm.flush()
        with psycopg.connect(postgres_schema, autocommit=True) as conn:
            kind, text, similarity = conn.execute(
                "SELECT pg_typeof(embedding)::text, body, 1 - (embedding <=> %s::vector) FROM ltm_records "
                "WHERE role = 'user'", ("[" + ",".join(map(str, embedder().embed([FACT])[0])) + "]",)).fetchone()
        assert (kind, text) == ("vector", FACT)
        assert similarity == pytest.approx(1.0, abs=1e-5)  # the stored vector is the text's embedding
        index = ltm.store.actor_index("alice")
        # the user's message has its unit vector; the reply is not embedded (found by its words): zeros, not NULL
        assert np.allclose(np.linalg.norm(index.vectors, axis=1), [1.0, 0.0], atol=1e-5)
        assert index.has_vector is None and ltm.store.count_unembedded() == 0
    finally:
        ltm.close()


def test_the_records_table_keeps_no_keyword_index(postgres_schema: str) -> None:
    """The search scores keywords in the application: an insert maintains no tsvector (schema 3 dropped it)."""
    ltm = postgres_ltm(postgres_schema)
    try:
        say(ltm, "alice", "s1", 1, FACT)
        with psycopg.connect(postgres_schema) as conn:
            columns = {name for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'ltm_records'")}
            indexes = {name for (name,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'ltm_records'")}
        assert "body" in columns and "words" not in columns and "ltm_records_words" not in indexes
        assert texts(ltm.search("alice", "peanut allergies", 5))[0] == FACT  # found all the same
    finally:
        ltm.close()

def test_the_factory_reads_database_url_and_describes_it_without_the_password(postgres_schema: str) -> None:
    settings = Settings.from_env({"MEMORY_BACKEND": "postgres", "DATABASE_URL": postgres_schema})
    ltm = create_postgres_long_term(settings)
    try:
        assert ltm.name == "postgres" and "kept in PostgreSQL (postgres postgres@" in ltm.describe()
        say(ltm, "alice", "s1", 1, FACT)
        ltm.flush()
        assert texts(ltm.search("alice", "peanut allergy", 1)) == [FACT]
    finally:
        ltm.close()


def answers(ltm) -> bool:
    try:
        ltm.epoch("alice")
        return True
    except LongTermUnavailable:
        return False


def test_a_stopped_database_is_a_long_term_503_and_it_serves_again_when_back() -> None:
    engine = PostgresEngine().start()
    ltm = postgres_ltm(engine.url)
    try:
        say(ltm, "alice", "s1", 1, FACT)
        ltm.flush()
        engine.pause()
        with pytest.raises(LongTermUnavailable) as info:
            ltm.forget("alice")
        assert info.value.status == 503 and "long-term store postgres" in info.value.message
        engine.resume()
        deadline = time.monotonic() + 30
        while not answers(ltm) and time.monotonic() < deadline:  # the pool reconnects on its own
            time.sleep(0.05)
        assert ltm.forget("alice") == 2
    finally:
        ltm.close()
        engine.stop()
