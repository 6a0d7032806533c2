"""Two replicas of the real server (``python agent.py``) on one PostgreSQL database, over HTTP: what the
user tells replica A, replica B recalls; ``forget`` on B leaves nothing on A, not even the records A still
was about to embed; 16 clients split over both get exact, gap-free counts. A real PostgreSQL 16 (pgserver)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from tests.helpers.longterm_server import FACT, QUESTION, eventually, say, search
from tests.helpers.server import Server

@pytest.fixture
def start(postgres_schema: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a server with MEMORY_BACKEND=postgres on the test's schema (every call: another replica)."""
    servers: list[Server] = []

    def started(**env: str) -> Server:
        server = Server({"MEMORY_BACKEND": "postgres", "DATABASE_URL": postgres_schema, **env},
                        log_path=tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        return server.start(timeout=120)

    yield started
    for server in servers:
        server.stop()


def test_a_fact_told_on_one_replica_is_recalled_on_the_other(start: Callable[..., Server]) -> None:
    a, b = start(), start()
    assert "long-term memory: on | backend=<postgres>" in a.log()
    say(a, "s1", FACT)
    found = eventually(lambda: search(b, "daughter cello"))
    assert FACT in found[0]["text"] and (found[0]["session_id"], found[0]["turn"]) == ("s1", 1)
    answer = say(b, "s2", QUESTION, explain=True)
    assert answer["history_length"] == 0 and answer["memories_used"] >= 1
    assert {(i["session_id"], i["turn"]) for i in answer["memory"]["long_term"]} == {("s1", 1)}
    assert say(b, "s1", "and what else?")["message_count"] == 2  # the session itself is shared too
    assert search(b, "daughter cello", actor="bob") == []


def waiting_on_locks(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()[0]


def test_forget_on_one_replica_leaves_nothing_on_the_other_not_even_its_background_embedding(
        start: Callable[..., Server], postgres_schema: str) -> None:
    """A's background writer is held with alice's first record in hand, about to add its vector (a row lock on
    alice's vector clock, as a slow database would hold it), while 24 more turns are answered on A (their
    text is committed on the request path, never behind the writer). B's forget lands meanwhile: nothing of
    alice stays, not the records, not the vector A adds after it."""
    a, b = start(), start()
    notes = [f"Locker note {n}: box {n} holds the spare key number {1000 + n}" for n in range(24)]
    with psycopg.connect(postgres_schema, autocommit=True) as holder, \
            psycopg.connect(postgres_schema, autocommit=True) as admin:
        holder.execute("BEGIN")
        holder.execute("INSERT INTO ltm_embedded (actor_id) VALUES ('alice')")  # uncommitted: A's writer waits on it
        say(a, "first", "Locker note: the first box is empty")  # alice's first record: nothing to reuse, embedded later
        assert eventually(lambda: waiting_on_locks(admin) >= 1)  # A's writer, with the record in hand
        with ThreadPoolExecutor(8) as clients:
            answers = list(clients.map(lambda n: say(a, f"locker-{n}", notes[n]), range(len(notes))))
        assert all(x["message_count"] == 1 for x in answers)
        assert admin.execute("SELECT count(*) FROM ltm_records WHERE actor_id = 'alice'").fetchone()[0] == 50
        assert notes[17] in [m["text"] for m in search(b, "box 17 spare key 1017")]  # committed, found on B
        assert admin.execute("SELECT count(*) FROM ltm_records WHERE actor_id = 'alice' AND embedding IS NULL"
                             ).fetchone()[0] >= 1
        status, forgot = b.invoke({"action": "forget", "actor_id": "alice"})  # B never waits for A's writer
        assert status == 200, forgot
        assert waiting_on_locks(admin) >= 1  # A's writer still holds its batch
        holder.execute("ROLLBACK")
    a.stop()  # SIGTERM: A's writer finishes its batch and drains; every record it held is gone
    with psycopg.connect(postgres_schema, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM ltm_records WHERE actor_id = 'alice'").fetchone()[0] == 0
    assert search(b, "locker note box spare key", top_k=50) == []
    say(b, "after", "I collect stamps from Norway")  # after the forget: recorded again, found by a new replica
    c = start()
    assert eventually(lambda: search(c, "stamps Norway"))


def test_sixteen_clients_split_over_two_replicas_get_exact_counts(start: Callable[..., Server]) -> None:
    # one session, 16 clients: a replica queues up to 16 requests per session (SESSION_QUEUE_MAX)
    replicas = [start(LONG_TERM_MEMORY="off", SESSION_QUEUE_MAX="16") for _ in range(2)]
    counts: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for k in range(6):
            body = say(replicas[(n + k) % 2], "busy", f"client {n} message {k}")
            with lock:
                counts.append(body["message_count"])

    with ThreadPoolExecutor(16) as clients:
        list(clients.map(client, range(16)))
    assert sorted(counts) == list(range(1, 97))
    status, history = replicas[0].invoke({"action": "get_history", "actor_id": "alice", "limit": 100}, "busy")
    assert status == 200 and [t["turn"] for t in history["turns"]] == list(range(1, 97))
