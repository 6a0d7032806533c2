"""LTM settings fail at start-up with one line; each session backend gets the long-term memory it says it gets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import longterm
from core.errors import ConfigError
from core.settings import Settings
from longterm.local import LocalLongTermMemory


@pytest.mark.parametrize("env, says", [
    ({"LONG_TERM_MEMORY": "sometimes"}, "LONG_TERM_MEMORY='sometimes' is not one of on, off"),
    ({"LTM_TOP_K": "0"}, "LTM_TOP_K=0 must be between 1 and 50"),
    ({"LTM_TOP_K": "five"}, "LTM_TOP_K='five' is not an integer"),
    ({"LTM_MIN_SCORE": "1.5"}, "LTM_MIN_SCORE=1.5 must be between 0 and 1"),
    ({"LTM_MIN_SCORE": "high"}, "LTM_MIN_SCORE='high' is not a number"),
    ({"LTM_MAX_TOKENS": "10"}, "LTM_MAX_TOKENS=10 must be between 50 and 20000"),
    ({"LTM_NAMESPACE": "/users/all/"}, "LTM_NAMESPACE='/users/all/' must contain {actorId}"),
    ({"LTM_NAMESPACE": "/strategies/{memoryStrategyId}/actors/{actorId}/"}, "no other placeholder"),
    ({"LTM_DRAIN_S": "61"}, "LTM_DRAIN_S=61 must be between 0 and 60"),
    ({"LTM_DRAIN_S": "soon"}, "LTM_DRAIN_S='soon' is not a number"),
])
def test_a_wrong_ltm_setting_names_itself(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    assert says in error.value.message


def test_ltm_defaults() -> None:
    settings = Settings.from_env({"SESSION_DB": "/data/chat.sqlite"})
    assert (settings.long_term_memory, settings.ltm_top_k, settings.ltm_min_score, settings.ltm_max_tokens) == (
        None, 5, 0.02, 600)
    assert settings.ltm_db == Path("/data/chat-longterm.sqlite")
    assert Settings.from_env({"LONG_TERM_MEMORY": "OFF"}).long_term_memory is False


def test_the_drain_bound_reaches_the_local_long_term_memory(tmp_path: Path) -> None:
    """``LTM_DRAIN_S`` bounds what ``close()`` spends adding vectors (default 3 s, well under a 10 s grace)."""
    assert Settings.from_env({}).ltm_drain_s == 3.0
    settings = replace(Settings.from_env({"LTM_DRAIN_S": "0.5"}), memory_backend="sqlite",
                       session_db=tmp_path / "sessions.db")
    ltm = longterm.create_long_term(settings, "sqlite")
    try:
        assert isinstance(ltm, LocalLongTermMemory) and ltm.drain_s == 0.5
    finally:
        assert ltm is not None
        ltm.close()


def _settings(tmp_path: Path, **changes: object) -> Settings:
    return replace(Settings.from_env({}), session_db=tmp_path / "sessions.db", **changes)


def test_sqlite_sessions_get_a_long_term_file_beside_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="longterm"):
        ltm = longterm.create_long_term(_settings(tmp_path), "sqlite")
    assert isinstance(ltm, LocalLongTermMemory) and ltm.store.durable
    assert (tmp_path / "sessions-longterm.db").is_file()
    [line] = [r.getMessage() for r in caplog.records if r.name == "longterm"]
    assert "long-term memory: on | backend=<sqlite>" in line and "sessions-longterm.db" in line
    ltm.close()


def test_in_process_sessions_get_in_process_long_term_memory(tmp_path: Path) -> None:
    ltm = longterm.create_long_term(_settings(tmp_path), "memory")
    assert isinstance(ltm, LocalLongTermMemory) and not ltm.store.durable
    assert not (tmp_path / "sessions-longterm.db").exists()
    ltm.close()


@pytest.mark.parametrize("backend", ["redis", "dynamodb"])
def test_shared_session_backends_say_long_term_memory_is_off(tmp_path: Path, backend: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="longterm"):
        assert longterm.create_long_term(_settings(tmp_path), backend) is None
    [line] = [r.getMessage() for r in caplog.records if r.name == "longterm"]
    assert f"long-term memory: off for MEMORY_BACKEND={backend}" in line


def test_on_with_a_shared_backend_keeps_records_on_this_replica_and_warns(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="longterm"):
        ltm = longterm.create_long_term(_settings(tmp_path, long_term_memory=True), "redis")
    assert isinstance(ltm, LocalLongTermMemory) and ltm.store.durable
    assert any(r.levelname == "WARNING" and "THIS replica" in r.getMessage() for r in caplog.records)
    ltm.close()


def test_off_is_off_for_every_backend(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="longterm"):
        for backend in ("memory", "sqlite", "redis", "agentcore"):
            assert longterm.create_long_term(_settings(tmp_path, long_term_memory=False), backend) is None
    assert not (tmp_path / "sessions-longterm.db").exists()
    assert sum("LONG_TERM_MEMORY=off" in r.getMessage() for r in caplog.records) == 4


def test_an_unusable_long_term_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "sessions-longterm.db").mkdir()  # a directory where the file should be
    with pytest.raises(ConfigError) as error:
        longterm.create_long_term(_settings(tmp_path), "sqlite")
    assert "SESSION_DB=" in error.value.message and "long-term store" in error.value.message
