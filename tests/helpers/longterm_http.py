"""Shared by the HTTP-level long-term memory tests: the settings, one server's ``Assistant`` on shared files, and
the ``ltm_assistant`` / ``http`` fixtures (import them into a test module to use them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import agent
from core.settings import Settings
from longterm.local import LocalLongTermMemory
from memory.sqlite import SQLiteStore
from service import Assistant
from tests.helpers.longterm_helpers import local_ltm
from tests.helpers.scripted_model import ScriptedModel


def ltm_settings(tmp_path: Path) -> Settings:
    """The defaults (LTM_MIN_SCORE included), SQLite sessions and records under ``tmp_path``."""
    return replace(Settings.from_env({}), memory_backend="sqlite", session_db=tmp_path / "sessions.db",
                   model_provider="echo")


def replica(settings: Settings, model: Any, ltm: LocalLongTermMemory | None = None) -> Assistant:
    """One server's Assistant on the shared files (its own store and long-term memory objects, as a process has)."""
    return Assistant(settings, SQLiteStore(settings.session_db), model, ltm or local_ltm(settings.ltm_db))


@pytest.fixture
def ltm_assistant(tmp_path: Path, model: ScriptedModel) -> Iterator[Assistant]:
    """The app's assistant for this test: the defaults with long-term memory, on ``tmp_path``."""
    assistant = replica(ltm_settings(tmp_path), model)
    agent.set_assistant(assistant)
    yield assistant
    agent.set_assistant(None)
    assistant.close()


@pytest.fixture
def http(ltm_assistant: Assistant) -> Iterator[TestClient]:
    with TestClient(agent.app) as c:
        yield c
