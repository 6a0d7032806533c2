"""LTM settings fail at start-up with one line; each session backend gets the long-term memory it says it gets."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import longterm
from core.errors import ConfigError
from core.settings import Settings
from longterm.agentcore import AgentCoreLongTermMemory
from longterm.local import LocalLongTermMemory
from tests.helpers.agentcore_fake import MEMORY_ID
from tests.helpers.server import spare_port

ROOT = Path(__file__).resolve().parent.parent


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
        None, 5, 0.05, 600)
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


# -- LTM_BACKEND: chosen apart from the session backend --------------------------------------------------


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "longterm"]


@pytest.mark.parametrize("backend", ["redis", "dynamodb"])
def test_off_by_default_for_shared_sessions_says_how_to_turn_it_on(tmp_path: Path, backend: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="longterm"):
        assert longterm.create_long_term(_settings(tmp_path), backend) is None
    [line] = _lines(caplog)
    assert "turn it on with " in line and "LTM_BACKEND=sqlite" in line and "this replica only" in line
    reason = longterm.off_reason(replace(_settings(tmp_path), memory_backend=backend))
    assert reason.startswith(f"the default for MEMORY_BACKEND={backend}, whose sessions every replica shares; ")
    assert "LTM_BACKEND=sqlite" in reason and "LONG_TERM_MEMORY=on" in reason


def test_agentcore_sessions_keep_long_term_memory_in_agentcore_by_default(tmp_path: Path) -> None:
    ltm = longterm.create_long_term(_settings(tmp_path, memory_id=MEMORY_ID), "agentcore")
    assert isinstance(ltm, AgentCoreLongTermMemory)
    ltm.close()


def test_ltm_backend_sqlite_keeps_records_beside_redis_sessions_on_this_replica(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = replace(_settings(tmp_path), ltm_backend="sqlite")
    with caplog.at_level("INFO", logger="longterm"):
        ltm = longterm.create_long_term(settings, "redis")
    assert isinstance(ltm, LocalLongTermMemory) and ltm.store.durable
    assert (tmp_path / "sessions-longterm.db").is_file()
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("long-term memory: LTM_BACKEND=sqlite with MEMORY_BACKEND=redis keeps records on THIS")
    ltm.close()


def test_ltm_backend_agentcore_beside_redis_sessions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = replace(Settings.from_env({"LTM_BACKEND": "AgentCore", "LONG_TERM_MEMORY": "on",
                                          "MEMORY_ID": MEMORY_ID}), session_db=tmp_path / "sessions.db")
    with caplog.at_level("INFO", logger="longterm"):
        ltm = longterm.create_long_term(settings, "redis")
    assert isinstance(ltm, AgentCoreLongTermMemory)  # LTM_BACKEND wins over LONG_TERM_MEMORY=on
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # shared records: nothing to warn of
    assert "ltm_backend=<agentcore> (LTM_BACKEND=agentcore)" in _lines(caplog)[-1]
    ltm.close()


def test_ltm_backend_agentcore_without_a_memory_id_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        longterm.create_long_term(replace(_settings(tmp_path), ltm_backend="agentcore"), "sqlite")
    assert error.value.message.startswith("LTM_BACKEND=agentcore needs MEMORY_ID")


def test_ltm_backend_off_turns_it_off_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = replace(_settings(tmp_path), ltm_backend="off")
    with caplog.at_level("INFO", logger="longterm"):
        assert longterm.create_long_term(settings, "sqlite") is None
    assert _lines(caplog) == ["long-term memory: off (LTM_BACKEND=off) | backend=<sqlite>"]
    assert not (tmp_path / "sessions-longterm.db").exists()
    reason = longterm.off_reason(settings)
    assert reason.startswith("LTM_BACKEND=off; start the server with ") and "LTM_BACKEND=sqlite" in reason
    assert "LONG_TERM_MEMORY=on" not in reason  # it would contradict LTM_BACKEND=off


def test_an_unknown_ltm_backend_names_the_choices(tmp_path: Path) -> None:
    settings = Settings.from_env({"LTM_BACKEND": "mongo"})
    with pytest.raises(ConfigError) as error:
        longterm.create_long_term(settings, "sqlite")
    assert error.value.message.startswith("LTM_BACKEND='mongo' is not one of sqlite, ")
    assert "agentcore" in error.value.message and error.value.message.endswith("off")


@pytest.mark.parametrize(("env", "says"), [
    ({"LONG_TERM_MEMORY": "off", "LTM_BACKEND": "sqlite"}, "LONG_TERM_MEMORY=off contradicts LTM_BACKEND=sqlite"),
    ({"LONG_TERM_MEMORY": "on", "LTM_BACKEND": "off"}, "LONG_TERM_MEMORY=on contradicts LTM_BACKEND=off"),
])
def test_contradicting_switches_are_one_line_naming_both(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    assert error.value.message == f"{says}: set one of them"


def test_switches_that_agree_are_accepted() -> None:
    assert Settings.from_env({"LONG_TERM_MEMORY": "off", "LTM_BACKEND": "OFF"}).ltm_backend == "off"
    assert Settings.from_env({"LONG_TERM_MEMORY": "on", "LTM_BACKEND": "sqlite"}).ltm_backend == "sqlite"
    assert Settings.from_env({}).ltm_backend is None


def test_a_contradiction_stops_the_server_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "agent.py")],
        env={"LONG_TERM_MEMORY": "off", "LTM_BACKEND": "sqlite", "PATH": "/usr/bin:/bin", "MODEL_PROVIDER": "echo",
             **spare_port()},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: LONG_TERM_MEMORY=off contradicts LTM_BACKEND=sqlite: set one of them"]


def test_off_reason_says_what_turned_it_off(tmp_path: Path) -> None:
    off = longterm.off_reason(_settings(tmp_path, long_term_memory=False))
    assert off.startswith("LONG_TERM_MEMORY=off; start the server with LONG_TERM_MEMORY=on")
    built_without = longterm.off_reason(_settings(tmp_path))  # sqlite: its settings would have turned it on
    assert built_without.startswith("this assistant was built without it; ")


def test_an_unknown_ltm_backend_stops_the_server_with_one_line_before_anything_is_built(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "agent.py")],
        env={"LTM_BACKEND": "mongo", "SESSION_DB": str(tmp_path / "s.db"), "PATH": "/usr/bin:/bin",
             "MODEL_PROVIDER": "echo", **spare_port()},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()  # no store line, no model line: neither was built
    assert line.startswith("configuration error: LTM_BACKEND='mongo' is not one of sqlite, ")
    assert not (tmp_path / "s.db").exists()
