"""Long-term memory in the real server: ``python agent.py`` processes (``tests.helpers.server.Server``), default settings.

What a newcomer does after ``make run`` (a fact in one session, asked about in another), restart durability
after a clean shutdown (SIGTERM) right after the last acknowledged turn, and two replicas sharing one
``SESSION_DB`` (and so one long-term file): what one records, the other finds; what one forgets or
clears, neither finds again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from longterm.base import MessageRecord
from longterm.sqlite_store import SQLiteLongTermStore
from tests.helpers.longterm_server import FACT, QUESTION, eventually, say, search
from tests.helpers.server import Server

@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a server on ``tmp_path/sessions.db`` (every call: another replica on the same files)."""
    servers: list[Server] = []

    def started(**env: str) -> Server:
        server = Server({"SESSION_DB": str(tmp_path / "sessions.db"), **env},
                        log_path=tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        return server.start(timeout=120)

    yield started
    for server in servers:
        server.stop()


def vectors_added(tmp_path: Path) -> bool:
    """Every record in the server's long-term file has its vector (the background writer is idle)."""
    records = SQLiteLongTermStore(tmp_path / "sessions-longterm.db")
    try:
        return records.count_unembedded() == 0
    finally:
        records.close()


def test_a_newcomer_tells_a_fact_in_one_session_and_is_reminded_of_it_in_another(
        start: Callable[..., Server], tmp_path: Path) -> None:
    server = start()
    assert "long-term memory: on | backend=<sqlite>" in server.log()
    say(server, "s1", FACT)
    found = search(server, "daughter cello")  # at once: the text was stored before the answer
    assert FACT in found[0]["text"] and (found[0]["session_id"], found[0]["turn"]) == ("s1", 1)
    assert eventually(lambda: vectors_added(tmp_path))  # recall by meaning, a moment later
    answer = say(server, "s2", QUESTION, explain=True)
    assert answer["history_length"] == 0 and answer["memories_used"] >= 1
    assert {(i["session_id"], i["turn"]) for i in answer["memory"]["long_term"]} == {("s1", 1)}
    assert search(server, "daughter cello", actor="bob") == []
    assert say(server, "b1", QUESTION, actor="bob")["memories_used"] == 0


def test_a_clean_shutdown_right_after_the_turns_loses_no_record(start: Callable[..., Server],
                                                                 tmp_path: Path) -> None:
    """Eight clients at once outrun the one background writer; SIGTERM must drain its queue, not drop it."""
    turns = 24
    server = start()
    messages = [f"Locker note {n}: box {n} holds the spare key number {1000 + n}" for n in range(turns)]
    with ThreadPoolExecutor(8) as clients:
        answers = list(clients.map(lambda n: say(server, f"locker-{n}", messages[n]), range(turns)))
    assert all(a["message_count"] == 1 for a in answers)
    server.stop()  # SIGTERM at once: uvicorn shuts down, the lifespan closes the assistant
    assert server.process is not None and server.process.returncode is not None
    restarted = start()
    found = {m["text"] for m in search(restarted, "locker note box spare key", top_k=50)}
    assert set(messages) <= found
    records = SQLiteLongTermStore(tmp_path / "sessions-longterm.db")  # a search shows a message for its echo
    try:
        assert records.count("alice") == 2 * turns  # each exchange: the message and the reply
    finally:
        records.close()


def test_a_sigkill_right_after_acknowledged_turns_loses_no_record(start: Callable[..., Server],
                                                                 tmp_path: Path) -> None:
    """The text of each record is stored before the reply is acknowledged: a kill with no shutdown at all
    (a supervisor's SIGKILL) loses none of them, and the next start gives them their vectors."""
    turns = 24
    server = start()
    messages = [f"Locker note {n}: box {n} holds the spare key number {1000 + n}" for n in range(turns)]
    with ThreadPoolExecutor(8) as clients:
        answers = list(clients.map(lambda n: say(server, f"locker-{n}", messages[n]), range(turns)))
    assert all(a["message_count"] == 1 for a in answers)
    server.kill()  # SIGKILL at once: no lifespan, no close, no atexit
    assert server.process is not None and server.process.returncode == -9
    restarted = start()
    found = {m["text"] for m in search(restarted, "locker note box spare key", top_k=50)}  # at once: no wait
    assert set(messages) <= found  # (a search shows a message for the reply that echoes it: both are counted below)
    records = SQLiteLongTermStore(tmp_path / "sessions-longterm.db")
    try:
        assert records.count("alice") == 2 * turns
        assert eventually(lambda: records.count_unembedded() == 0)  # the restart embedded what was left
    finally:
        records.close()


def test_sigterm_with_a_backlog_exits_within_the_drain_bound_and_the_rest_is_embedded_at_the_next_start(
        start: Callable[..., Server], tmp_path: Path) -> None:
    """A real backlog at SIGTERM (records without vectors, counted in the file just before the signal): the
    server exits within ``LTM_DRAIN_S`` plus its own shutdown, says in one line what it left, and the next
    start embeds the rest."""
    path = tmp_path / "sessions-longterm.db"
    left_by_a_kill = SQLiteLongTermStore(path)  # what a killed server left: text stored, no vectors
    for first in range(0, 3000, 200):
        left_by_a_kill.write([MessageRecord("carol", "garden", n + 1, 0, "user", f"garden note {n}",
                                            1_700_000_000.0 + n) for n in range(first, first + 200)])
    left_by_a_kill.close()
    server = start(LTM_DRAIN_S="0.5")
    answers = [say(server, f"s{n}", f"Remember this: my locker number is {4100 + n}") for n in range(5)]
    assert [a["message_count"] for a in answers] == [1] * 5
    watcher = SQLiteLongTermStore(path)
    try:
        backlog = watcher.count_unembedded()
        assert backlog > 0, backlog  # 1-5 ms a text: seconds of work left, far more than LTM_DRAIN_S
        assert server.process is not None
        started = time.monotonic()
        server.process.terminate()
        server.process.wait(30)
        took = time.monotonic() - started
        assert took < 0.5 + 4, f"exit took {took:.1f} s"  # the drain bound, the close's slack, uvicorn's shutdown
        closed = [line for line in server.log().splitlines() if "long-term memory: closed" in line]
        assert len(closed) == 1, closed
        left = int(closed[0].split("records left without vectors: ")[1].split(" ")[0])
        assert 0 < left == watcher.count_unembedded()
        assert "Traceback" not in server.log()
        restarted = start()
        assert {m["text"] for m in search(restarted, "locker number", top_k=10)} >= {
            f"Remember this: my locker number is {4100 + n}" for n in range(5)}
        assert eventually(lambda: watcher.count_unembedded() == 0, timeout=120)
        assert watcher.count("carol") == 3000
    finally:
        watcher.close()


def test_a_second_replica_finds_forgets_and_clears_what_the_first_recorded(start: Callable[..., Server],
                                                                          tmp_path: Path) -> None:
    a, b = start(), start()
    say(a, "s1", FACT)
    assert search(b, "daughter cello")  # at once: the text was stored before a answered
    assert eventually(lambda: vectors_added(tmp_path))  # recall by meaning (and its score), a moment later
    assert say(b, "s2", QUESTION)["memories_used"] >= 1

    status, forgot = b.invoke({"action": "forget", "actor_id": "alice"})
    assert status == 200 and forgot["deleted"] >= 2
    assert search(a, "daughter cello Ingrid instrument") == []

    say(a, "s3", "I collect stamps from Norway")  # after the forget: recorded again
    assert eventually(lambda: search(b, "stamps Norway"))
    status, cleared = b.invoke({"action": "clear_session", "actor_id": "alice"}, "s3")
    assert status == 200 and cleared["deleted"] == 1 and cleared["deleted_memories"] == 2
    assert search(a, "stamps Norway") == [] and search(b, "stamps Norway") == []
