"""MEMORY_BACKEND picks the store; the production stores are built from settings without calling anything."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.settings import Settings
from memory import create_store
from memory.agentcore import AgentCoreStore
from memory.redis_store import RedisStore, session_key
from tests.helpers.agentcore_fake import MEMORY_ID
from tests.helpers.server import spare_port

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
