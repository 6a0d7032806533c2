"""The process and its store under faults, on the real server (``python agent.py``, echo model).

- ``kill -9`` while clients write (SQLite, Redis): after a restart every turn whose 200 the client
  received is there, at the position its ``message_count`` named, and every stored turn is whole.
- The SQLite database locked by another connection, or its files unwritable: a JSON 503 naming the
  store, the server keeps serving, and the next request after the cause is gone works (no restart).
- A ``SESSION_DB`` that cannot hold a database is a configuration error (``python agent.py`` prints
  a ``ConfigError`` as one line and exits 2: ``tests/test_config.py``).
(Redis stopped / hung: ``tests/test_redis_store.py``; AgentCore Memory failing: ``tests/test_agentcore_store.py``.)
"""

from __future__ import annotations

import http.client
import os
import sqlite3
import subprocess
import threading
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.settings import Settings
from core.errors import ConfigError
from memory import create_store
from memory.base import SessionStore
from memory.redis_store import RedisStore
from memory.sqlite import SQLiteStore
from tests.helpers.http_load import Client, LogDrain, echo, in_threads, questions_in_order
from tests.helpers.server import Server

WRITERS = 8
ACKNOWLEDGED_BEFORE_KILL = 40


@pytest.fixture(params=["sqlite", "redis"])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[dict[str, str], SessionStore]]:
    """The server's environment and the same store opened by the test process."""
    if request.param == "sqlite":
        env = {"MEMORY_BACKEND": "sqlite", "SESSION_DB": str(tmp_path / "sessions.db")}
        store: SessionStore = SQLiteStore(tmp_path / "sessions.db")
        yield env, store
        store.close()
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"test:{uuid.uuid4().hex}:"
    store = RedisStore.from_url(url, key_prefix=prefix)
    yield {"MEMORY_BACKEND": "redis", "REDIS_URL": url, "KEY_PREFIX": prefix}, store
    store.close()
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def test_kill_9_while_clients_write_loses_no_acknowledged_turn(durable: tuple[dict[str, str], SessionStore]) -> None:
    env, store = durable
    env = {**env, "ROLLING_SUMMARY": "off"}
    server = Server(env).start()
    LogDrain(server)
    acknowledged: dict[str, dict[str, int]] = defaultdict(dict)  # session -> question -> message_count
    lock = threading.Lock()
    enough = threading.Event()

    def writer(w: int) -> int:
        """Writes until the server dies; alternates between a shared session and its own."""
        client = Client(server.port, timeout=30)
        n = 0
        try:
            while True:
                session = "shared" if n % 2 == 0 else f"own-{w}"
                question = f"writer {w} message {n}"
                try:
                    status, body = client.post({"message": question}, session)
                except (OSError, http.client.HTTPException):
                    return n  # killed: this last turn may or may not have been stored (whole)
                assert status == 200 and body["response"] == echo(question), body
                with lock:
                    acknowledged[session][question] = body["message_count"]
                    if sum(map(len, acknowledged.values())) >= ACKNOWLEDGED_BEFORE_KILL:
                        enough.set()
                n += 1
        finally:
            client.close()

    def killer() -> None:
        assert enough.wait(60), "the writers did not get going"
        server.kill()  # SIGKILL: no shutdown, no flush, requests in flight

    in_threads(lambda job, w: writer(w) if job == "write" else killer(),
               [("write", w) for w in range(WRITERS)] + [("kill", -1)])
    server.stop()

    restarted = Server(env).start()
    LogDrain(restarted)
    try:
        for session, turns in acknowledged.items():
            stored = questions_in_order(store.list_events("default_user", session))  # every stored turn whole
            position = {question: i for i, question in enumerate(stored, start=1)}
            assert len(position) == len(stored), "a turn was stored twice"
            assert {q: position.get(q) for q in turns} == turns  # every acknowledged turn, where its count said
            status, body = restarted.invoke({"message": "after the crash"}, session)
            assert (status, body["message_count"]) == (200, len(stored) + 1)
            assert body["history_length"] == min(len(stored), 10)
        assert len(acknowledged["shared"]) > 0 and len(acknowledged) > 2
    finally:
        restarted.stop()


def test_a_locked_sqlite_database_is_a_503_naming_the_store_and_recovers_by_itself(tmp_path: Path) -> None:
    """Another process holds the write lock (``BEGIN EXCLUSIVE``); as root, file permissions would not stop us."""
    db = tmp_path / "sessions.db"
    server = Server({"SESSION_DB": str(db), "SQLITE_BUSY_TIMEOUT_MS": "150"}).start()
    LogDrain(server)
    try:
        assert server.invoke({"message": "one"}, "conv1")[1]["message_count"] == 1
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            for body in ({"message": "two"}, {"action": "clear_session"}):
                status, answer = server.invoke(body, "conv1")
                assert status == 503
                assert answer == {"error": "session store 'sqlite' is unavailable: database is locked"}
            with urllib.request.urlopen(f"{server.url}/ping", timeout=5) as ping:
                assert ping.status == 200
            assert server.process is not None and server.process.poll() is None
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        status, answer = server.invoke({"message": "two"}, "conv1")
        assert (status, answer["message_count"], answer["history_length"]) == (200, 2, 1)
    finally:
        server.stop()
    assert [m.text for e in SQLiteStore(db).list_events("default_user", "conv1") for m in e.messages] == [
        "one", echo("one"), "two", echo("two")]


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Callable[..., None]]:
    """``immutable(*paths)``: ``chattr +i`` (even root cannot write them) until the test ends."""
    probe = tmp_path / "probe"
    probe.write_text("")
    try:
        result = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True)
        missing = "" if result.returncode == 0 else \
            f"needs chattr +i (root with CAP_LINUX_IMMUTABLE on ext4/xfs/btrfs): {result.stderr.strip()}"
    except FileNotFoundError:
        missing = "needs the chattr tool (e2fsprogs) to make a file unwritable for root"
    if missing:  # CI runs as root on ext4: what it can provide it must, so there this fails instead
        if os.environ.get("REQUIRE_TEST_SERVICES", "").strip() not in ("", "0"):
            pytest.fail(f"{missing} (REQUIRE_TEST_SERVICES is set)", pytrace=False)
        pytest.skip(missing)
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    locked: list[str] = []

    def lock(*paths: Path) -> None:
        subprocess.run(["chattr", "+i", *map(str, paths)], check=True)
        locked.extend(map(str, paths))

    yield lock
    locked = [path for path in locked if Path(path).exists()]  # a clean shutdown checkpoints away the -wal file
    if locked:
        subprocess.run(["chattr", "-i", *locked], check=True)


def test_an_unwritable_sqlite_file_is_a_503_naming_the_store_and_recovers_by_itself(
    tmp_path: Path, immutable: Callable[..., None]
) -> None:
    """The database and its WAL become unwritable (``chattr +i``) while the server runs. (Not the
    ``-shm`` file: SQLite maps it into memory, and a write fault there is a SIGBUS no code can catch.)"""
    db = tmp_path / "sessions.db"
    server = Server({"SESSION_DB": str(db)}).start()
    LogDrain(server)
    try:
        assert server.invoke({"message": "one"}, "conv1")[1]["message_count"] == 1
        immutable(db, tmp_path / "sessions.db-wal", tmp_path)
        for body in ({"message": "two"}, {"message": "two"}, {"action": "clear_session"}):
            status, answer = server.invoke(body, "conv1")
            assert status == 503
            assert answer["error"].startswith("session store 'sqlite' is unavailable: ")
        assert server.process is not None and server.process.poll() is None
        subprocess.run(["chattr", "-i", str(db), str(tmp_path / "sessions.db-wal"), str(tmp_path)], check=True)
        status, answer = server.invoke({"message": "two"}, "conv1")
        assert (status, answer["message_count"], answer["history_length"]) == (200, 2, 1)
    finally:
        server.stop()


def test_a_read_only_session_db_directory_is_a_config_error(tmp_path: Path, immutable: Callable[..., None]) -> None:
    directory = tmp_path / "read-only"
    directory.mkdir()
    immutable(directory)
    settings = replace(Settings.from_env({}), memory_backend="sqlite", session_db=directory / "sessions.db")
    with pytest.raises(ConfigError) as info:
        create_store(settings)
    assert str(info.value).startswith(f"SESSION_DB='{directory / 'sessions.db'}': session store 'sqlite' is unavailable")


def test_a_missing_session_db_directory_is_created(tmp_path: Path) -> None:
    settings = replace(Settings.from_env({}), memory_backend="sqlite", session_db=tmp_path / "new" / "dir" / "s.db")
    store = create_store(settings)
    assert store.add_turns("alice", "s1", [ConversationalMessage("hi", MessageRole.USER)]) == 1
    store.close()


@pytest.mark.parametrize("where", ["under a file", "a directory"])
def test_a_session_db_that_cannot_hold_a_database_is_a_config_error(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "a-dir").mkdir()
    path = tmp_path / "a-file" / "sessions.db" if where == "under a file" else tmp_path / "a-dir"
    settings = replace(Settings.from_env({}), memory_backend="sqlite", session_db=path)
    with pytest.raises(ConfigError) as info:
        create_store(settings)
    assert str(info.value).startswith(f"SESSION_DB='{path}': session store 'sqlite' is unavailable: ")
