"""Settings: defaults, backend selection, and one clear line naming the variable for every bad value."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from core.errors import ConfigError
from memory import create_store, session_backend
from tests.helpers.server import Server, free_port, spare_port

ROOT = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    s = Settings.from_env({})
    assert session_backend(s).name == "sqlite"
    assert s.memory_k == 10
    assert s.max_message_chars == 32_000
    assert s.session_ttl is None
    assert str(s.session_db).startswith(".data")


def test_memory_id_selects_agentcore_unless_a_backend_is_named() -> None:
    assert session_backend(Settings.from_env({"MEMORY_ID": "mem-123456789012"})).name == "agentcore"
    assert Settings.from_env({"BEDROCK_AGENTCORE_MEMORY_ID": "mem-123456789012"}).memory_id == "mem-123456789012"
    named = Settings.from_env({"MEMORY_ID": "mem-123456789012", "MEMORY_BACKEND": "SQLite "})
    assert session_backend(named).name == "sqlite"


@pytest.mark.parametrize(("env", "says"), [
    ({"MEMORY_BACKEND": "nosuch"}, "MEMORY_BACKEND='nosuch' is not one of memory, sqlite, redis, dynamodb, agentcore"),
    ({"MEMORY_BACKEND": "agentcore"}, "MEMORY_BACKEND=agentcore needs MEMORY_ID"),
])
def test_a_backend_the_registry_cannot_build_is_one_line_naming_the_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_store(Settings.from_env(env))
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
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
        ({"REDIS_CLUSTER": "maybe"}, "REDIS_CLUSTER"),
        ({"DYNAMODB_TABLE": "ab"}, "DYNAMODB_TABLE"),
        ({"DYNAMODB_TABLE": "sessions/prod"}, "DYNAMODB_TABLE"),
        ({"DYNAMODB_ENDPOINT_URL": "127.0.0.1:8000"}, "DYNAMODB_ENDPOINT_URL"),
        ({"DYNAMODB_CREATE_TABLE": "yes please"}, "DYNAMODB_CREATE_TABLE"),
        ({"SQLITE_SYNCHRONOUS": "OFF"}, "SQLITE_SYNCHRONOUS"),
        ({"PORT": "abc"}, "PORT"),
        ({"PORT": "99999"}, "PORT"),
        ({"PORT": "0"}, "PORT"),
        ({"HOST": "not a host!"}, "HOST"),
        ({"SESSION_QUEUE_MAX": "-1"}, "SESSION_QUEUE_MAX"),
        ({"TURN_WORKERS": "0"}, "TURN_WORKERS"),
        ({"MAX_BODY_BYTES": "10"}, "MAX_BODY_BYTES"),
        ({"HTTP_READ_TIMEOUT_S": "soon"}, "HTTP_READ_TIMEOUT_S"),
        ({"HTTP_READ_TIMEOUT_S": "nan"}, "HTTP_READ_TIMEOUT_S"),
        ({"HTTP_IDLE_TIMEOUT_S": "0"}, "HTTP_IDLE_TIMEOUT_S"),
        ({"MAX_CONNECTIONS": "1"}, "MAX_CONNECTIONS"),
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
        env={"MEMORY_BACKEND": "nosuch", "PATH": "/usr/bin:/bin", "MODEL_PROVIDER": "echo", **spare_port()},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: MEMORY_BACKEND='nosuch' is not one of ")


def start_up(env: dict[str, str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "agent.py")], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=60, cwd=cwd, **kwargs)  # type: ignore[call-overload]


@pytest.mark.parametrize(("port", "expected"), [
    ("abc", "configuration error: PORT='abc' is not an integer"),
    ("99999", "configuration error: PORT=99999 must be between 1 and 65535"),
])
def test_a_bad_port_is_one_line_naming_it(tmp_path: Path, port: str, expected: str) -> None:
    result = start_up({"PORT": port, "MODEL_PROVIDER": "echo"}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [expected]


def test_a_bad_host_is_one_line_naming_it(tmp_path: Path) -> None:
    for host, needle in (("no such host!", "HOST='no such host!' is neither"), ("192.0.2.1", "HOST=192.0.2.1 cannot")):
        result = start_up({"HOST": host, "PORT": str(free_port()), "MODEL_PROVIDER": "echo"}, tmp_path)
        assert result.returncode == 2
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("configuration error: ") and needle in line


def test_a_port_in_use_stops_start_up_before_the_model_or_store_is_built(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start_up({"PORT": str(port), "HOST": "127.0.0.1", "MODEL_PROVIDER": "echo",
                           "SESSION_DB": str(tmp_path / "s.db")}, tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()  # no model line, no store line: neither was built
    assert line.startswith(f"configuration error: PORT={port} cannot be served: binding 127.0.0.1:{port} failed")
    assert not (tmp_path / "s.db").exists()


def test_max_connections_beyond_the_descriptor_limit_is_one_line(tmp_path: Path) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    result = start_up({"MAX_CONNECTIONS": "5000", "MODEL_PROVIDER": "echo"}, tmp_path, preexec_fn=low_limit)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "MAX_CONNECTIONS=5000 needs" in line and "ulimit -n" in line


def test_start_up_says_where_it_serves_the_store_and_the_model(tmp_path: Path) -> None:
    server = Server({"SESSION_DB": str(tmp_path / "s.db"), "HOST": "127.0.0.1"}, log_path=tmp_path / "log").start()
    server.stop()
    [line] = [line for line in server.log().splitlines() if "serving on " in line]
    assert f"serving on http://127.0.0.1:{server.port}" in line
    assert f"store=<sqlite {tmp_path / 's.db'}>" in line and "model=<echo>" in line and "context=<" in line


def test_an_unreachable_redis_is_a_warning_at_start_up(tmp_path: Path) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    server = Server({"MEMORY_BACKEND": "redis", "REDIS_URL": url}, log_path=tmp_path / "log").start()
    server.stop()
    log = server.log()
    [warning] = [line for line in log.splitlines() if " WARNING " in line]
    assert "session store 'redis' is unavailable" in warning and "503" in warning
    assert "redis://:***@127.0.0.1" in log and "secret" not in log
