"""MEMORY_BACKEND picks the store (through its registry entry); the production stores are built from settings
without calling anything; the start-up line and probe say what each backend is and whether it answers."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

import longterm
from core.settings import Settings
from memory import SESSION_BACKENDS, SessionBackend, create_store, describe_store, probe_store, session_backend
from memory.agentcore import AgentCoreStore
from memory.in_memory import InMemoryStore
from memory.redis_store import RedisStore, session_key
from memory.sqlite import SQLiteStore
from tests.conftest import start_or_skip
from tests.helpers.agentcore_fake import MEMORY_ID
from tests.helpers.dynamodb_local import CLIENT_ENV, DynamoDBLocal
from tests.helpers.server import Server, spare_port

ROOT = Path(__file__).resolve().parent.parent


def test_a_memory_id_selects_agentcore(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env({"BEDROCK_AGENTCORE_MEMORY_ID": MEMORY_ID, "AWS_REGION": "eu-west-1"})
    with caplog.at_level(logging.WARNING):
        store = create_store(settings)
    assert isinstance(store, AgentCoreStore)
    assert store.memory_id == MEMORY_ID
    assert store.manager.region_name == "eu-west-1"
    assert "SESSION_TTL" not in caplog.text
    store.close()


def test_session_ttl_with_agentcore_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        store = create_store(Settings.from_env({"MEMORY_ID": MEMORY_ID, "SESSION_TTL": "3600"}))
    assert isinstance(store, AgentCoreStore)
    assert "SESSION_TTL does not apply to MEMORY_BACKEND=agentcore" in caplog.text


def test_redis_backend_uses_the_url_and_prefix(redis_url: str) -> None:
    prefix = f"sel-test-{uuid.uuid4().hex}:"
    settings = Settings.from_env({"MEMORY_BACKEND": "redis", "REDIS_URL": redis_url, "KEY_PREFIX": prefix,
                                  "SESSION_TTL": "3600"})
    store = create_store(settings)
    assert isinstance(store, RedisStore)
    try:
        assert store.keys("a", "s")[0] == session_key(prefix, "a", "s") + ":meta"
        assert store.add_turns("a", "s", [ConversationalMessage("hi", MessageRole.USER)]) == 1
        raw = redis.Redis.from_url(redis_url)
        assert 3500 < raw.ttl(store.keys("a", "s")[0]) <= 3600  # SESSION_TTL reached the store
        raw.close()
    finally:
        store.delete_session("a", "s")
        store.close()


def test_a_memory_id_the_service_would_refuse_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "agent.py")],
        env={"MEMORY_ID": "mem-123456789012", "PATH": "/usr/bin:/bin", "MODEL_PROVIDER": "echo", **spare_port()},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: MEMORY_ID")


def test_with_nothing_set_sessions_are_in_sqlite_at_session_db(tmp_path: Path) -> None:
    settings = Settings.from_env({"SESSION_DB": str(tmp_path / "chat.db")})
    store = create_store(settings)
    try:
        assert isinstance(store, SQLiteStore)
        store.add_turns("a", "s", [ConversationalMessage("hi", MessageRole.USER)])
        assert (tmp_path / "chat.db").is_file()
        assert describe_store(settings) == f"sqlite {tmp_path / 'chat.db'}"
    finally:
        store.close()


def test_in_process_sessions_say_so_at_start_up() -> None:
    settings = Settings.from_env({"MEMORY_BACKEND": "memory"})
    assert isinstance(create_store(settings), InMemoryStore)
    assert describe_store(settings) == "memory (in this process; gone when it stops)"


@pytest.mark.parametrize(("env", "line"), [
    ({"DYNAMODB_TABLE": "chat-prod", "AWS_REGION": "eu-central-1"}, "dynamodb table chat-prod in eu-central-1"),
    ({"DYNAMODB_ENDPOINT_URL": "http://127.0.0.1:8000"}, "dynamodb table agentcore-sessions at http://127.0.0.1:8000"),
])
def test_the_dynamodb_start_up_line_names_the_table_and_where_it_is(env: dict[str, str], line: str) -> None:
    assert describe_store(Settings.from_env({"MEMORY_BACKEND": "dynamodb", **env})) == line


def test_a_dynamodb_server_says_its_table_and_endpoint_not_in_this_process(tmp_path: Path) -> None:
    engine = start_or_skip(DynamoDBLocal(db_path=tmp_path / "ddb"), "DynamoDB Local")
    try:
        server = Server({"MEMORY_BACKEND": "dynamodb", "DYNAMODB_ENDPOINT_URL": engine.endpoint,
                         "DYNAMODB_TABLE": "chat", "DYNAMODB_CREATE_TABLE": "on", **CLIENT_ENV},
                        log_path=tmp_path / "log").start()
        server.stop()
    finally:
        engine.stop()
    [line] = [line for line in server.log().splitlines() if "serving on " in line]
    assert f"store=<dynamodb table chat at {engine.endpoint}>" in line
    assert "in this process" not in line


def test_a_redis_that_does_not_answer_is_a_warning_from_the_start_up_probe(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as closed:  # a port nothing listens on: bound, never listening
        closed.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{closed.getsockname()[1]}/0"
        store = create_store(Settings.from_env({"MEMORY_BACKEND": "redis", "REDIS_URL": url}))
        try:
            with caplog.at_level(logging.WARNING):
                probe_store(store)
        finally:
            store.close()
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("session store 'redis' is unavailable: ")
    assert warning.endswith("; requests answer 503 until it is reachable")


def test_a_redis_that_answers_passes_the_probe_silently(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = create_store(Settings.from_env({"MEMORY_BACKEND": "redis", "REDIS_URL": redis_url,
                                            "KEY_PREFIX": f"probe-{uuid.uuid4().hex}:"}))
    try:
        with caplog.at_level(logging.WARNING):
            probe_store(store)
    finally:
        store.close()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


class ScratchStore(InMemoryStore):
    """A backend this build does not have, as a contributor would add it: its own store with its own name."""

    name = "scratch"


def test_a_new_backend_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    probed: list[str] = []
    entry = SessionBackend("scratch", lambda s: ScratchStore(ttl=s.session_ttl), ("SESSION_TTL",),
                           lambda s: "scratch (shared by every replica)", shared=True,
                           probe=lambda store: probed.append(store.name))
    monkeypatch.setitem(SESSION_BACKENDS, "scratch", entry)
    settings = Settings.from_env({"MEMORY_BACKEND": "scratch", "SESSION_DB": str(tmp_path / "s.db")})
    store = create_store(settings)
    assert isinstance(store, ScratchStore) and session_backend(settings) is entry
    assert describe_store(settings) == "scratch (shared by every replica)"
    probe_store(store)
    assert probed == ["scratch"]
    with caplog.at_level("INFO", logger="longterm"):  # shared sessions: long-term memory off by default
        assert longterm.create_long_term(settings, store.name) is None
    assert "long-term memory: off for MEMORY_BACKEND=scratch" in caplog.text
