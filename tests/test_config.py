"""Settings: defaults, backend selection, and one clear line naming the variable for every bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.memory_backend == "sqlite"
    assert s.memory_k == 10
    assert s.max_message_chars == 32_000
    assert s.session_ttl is None
    assert str(s.session_db).startswith(".data")


def test_memory_id_selects_agentcore_unless_a_backend_is_named() -> None:
    assert Settings.from_env({"MEMORY_ID": "mem-123456789012"}).memory_backend == "agentcore"
    assert Settings.from_env({"BEDROCK_AGENTCORE_MEMORY_ID": "mem-123456789012"}).memory_id == "mem-123456789012"
    assert Settings.from_env({"MEMORY_ID": "mem-123456789012", "MEMORY_BACKEND": "sqlite"}).memory_backend == "sqlite"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MEMORY_BACKEND": "postgres"}, "MEMORY_BACKEND"),
        ({"MEMORY_BACKEND": "agentcore"}, "MEMORY_ID"),
        ({"MEMORY_ID": "short"}, "MEMORY_ID"),
        ({"MEMORY_K": "ten"}, "MEMORY_K"),
        ({"MEMORY_K": "0"}, "MEMORY_K"),
        ({"SUMMARY_BATCH": "0"}, "SUMMARY_BATCH"),
        ({"MEMORY_K": "4", "SUMMARY_BATCH": "5"}, "SUMMARY_BATCH"),
        ({"SESSION_TTL": "-5"}, "SESSION_TTL"),
        ({"MAX_MESSAGE_CHARS": "lots"}, "MAX_MESSAGE_CHARS"),
        ({"MODEL_PROVIDER": "gpt"}, "MODEL_PROVIDER"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"SQLITE_SYNCHRONOUS": "OFF"}, "SQLITE_SYNCHRONOUS"),
        ({"MAX_TOKENS": "0"}, "MAX_TOKENS"),
        ({"SUMMARY_MAX_TOKENS": "many"}, "SUMMARY_MAX_TOKENS"),
        ({"MODEL_TIMEOUT_S": "soon"}, "MODEL_TIMEOUT_S"),
        ({"MODEL_TIMEOUT_S": "0"}, "MODEL_TIMEOUT_S"),
        ({"MEMORY_MAX_TOKENS": "-1"}, "MEMORY_MAX_TOKENS"),
        ({"LOCAL_MODEL_PARALLEL": "0"}, "LOCAL_MODEL_PARALLEL"),
        ({"LOCAL_MODEL_CONTEXT": "100"}, "LOCAL_MODEL_CONTEXT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert variable in str(info.value)


def test_a_bad_setting_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "agent.py")],
        env={"MEMORY_BACKEND": "nosuch", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "MEMORY_BACKEND" in lines[0]
