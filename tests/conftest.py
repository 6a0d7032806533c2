"""Fixtures shared by the suite: stores (one per backend), a scripted model, an assistant, an HTTP client."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import agent
from assistant import Assistant
from config import Settings
from memory.base import SessionStore
from memory.in_memory import InMemoryStore
from memory.sqlite import SQLiteStore
from tests.scripted_model import ScriptedModel

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
ACTOR_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Actor-Id"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's settings or writes under the repo's .data/."""
    for name in ("MEMORY_BACKEND", "MEMORY_ID", "BEDROCK_AGENTCORE_MEMORY_ID", "MODEL_PROVIDER", "SESSION_TTL",
                 "MEMORY_K", "MAX_MESSAGE_CHARS", "LOCAL_MODEL_PATH", "ROLLING_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SESSION_DB", str(tmp_path / "env-sessions.db"))


# -- stores ------------------------------------------------------------------------------------

@dataclass
class StoreFactory:
    """Builds a store of one backend; ``make(ttl=...)`` may be called more than once (restarts)."""

    name: str
    make: Callable[..., SessionStore]
    durable: bool = True  # keeps turns across a restart (a new store object on the same data)


def _memory_factory(tmp_path: Path) -> StoreFactory:
    return StoreFactory("memory", lambda ttl=None: InMemoryStore(ttl=ttl), durable=False)


def _sqlite_factory(tmp_path: Path) -> StoreFactory:
    return StoreFactory("sqlite", lambda ttl=None: SQLiteStore(tmp_path / "sessions.db", ttl=ttl))


STORE_FACTORIES: dict[str, Callable[[Path], StoreFactory]] = {
    "memory": _memory_factory,
    "sqlite": _sqlite_factory,
}


@pytest.fixture(params=list(STORE_FACTORIES))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    yield STORE_FACTORIES[request.param](tmp_path)


@pytest.fixture(params=[name for name, f in STORE_FACTORIES.items() if f is not _memory_factory])
def durable_store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Every backend that keeps turns across a restart (all but ``memory``)."""
    yield STORE_FACTORIES[request.param](tmp_path)


@pytest.fixture
def store(store_factory: StoreFactory) -> Iterator[SessionStore]:
    s = store_factory.make()
    yield s
    s.close()


# -- the assistant ------------------------------------------------------------------------------

@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return replace(Settings.from_env({}), memory_backend="sqlite", session_db=tmp_path / "sessions.db",
                   model_provider="echo")


@pytest.fixture
def model() -> ScriptedModel:
    """Answers ``You said '<message>'`` unless a test scripts other replies."""
    return ScriptedModel(echo=True)


@pytest.fixture
def assistant(settings: Settings, store: SessionStore, model: ScriptedModel) -> Iterator[Assistant]:
    a = Assistant(replace(settings, memory_backend=store.name), store, model)
    agent.set_assistant(a)
    yield a
    agent.set_assistant(None)


@pytest.fixture
def client(assistant: Assistant) -> Iterator[TestClient]:
    with TestClient(agent.app) as c:
        yield c


@pytest.fixture
def unique_session() -> Callable[[], str]:
    return lambda: f"s-{uuid.uuid4().hex[:12]}"
