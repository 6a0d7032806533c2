"""Fixtures shared by the suite: stores (one per backend), a scripted model, an assistant, an HTTP client."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import boto3
import pytest
from starlette.testclient import TestClient

import agent
from service import Assistant
from core.settings import Settings
from memory.agentcore import AgentCoreStore
from memory.base import SessionStore
from memory.dynamodb import DynamoDBStore, create_table
from memory.in_memory import InMemoryStore
from memory.redis_store import RedisStore
from memory.sqlite import SQLiteStore
from tests.helpers.agentcore_fake import MEMORY_ID, FakeMemoryService
from tests.helpers.dynamodb_local import DynamoDBLocal, MissingTool
from tests.helpers.redis_cluster import RedisCluster, delete_cluster_prefix
from tests.helpers.redis_server import RedisServer, answers_ping, delete_prefix, unique_prefix
from tests.helpers.scripted_model import ScriptedModel

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
ACTOR_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Actor-Id"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's settings or writes under the repo's .data/."""
    for name in ("MEMORY_BACKEND", "MEMORY_ID", "BEDROCK_AGENTCORE_MEMORY_ID", "MODEL_PROVIDER", "SESSION_TTL",
                 "MEMORY_K", "MAX_MESSAGE_CHARS", "LOCAL_MODEL_PATH", "ROLLING_SUMMARY", "REDIS_URL", "KEY_PREFIX",
                 "LOG_LEVEL", "LOG_FORMAT", "SQLITE_BUSY_TIMEOUT_MS", "SUMMARY_BATCH", "PORT", "HOST",
                 "SESSION_QUEUE_MAX", "TURN_WORKERS", "MAX_BODY_BYTES", "HTTP_READ_TIMEOUT_S", "HTTP_IDLE_TIMEOUT_S",
                 "MAX_CONNECTIONS", "LONG_TERM_MEMORY", "LTM_TOP_K", "LTM_MIN_SCORE", "LTM_MAX_TOKENS",
                 "LTM_NAMESPACE", "LTM_BACKEND", "DEV_UI", "REDIS_CLUSTER",
                 "DYNAMODB_TABLE", "DYNAMODB_ENDPOINT_URL", "DYNAMODB_CREATE_TABLE", "MAX_TOKENS",
                 "SUMMARY_MAX_TOKENS", "MODEL_TIMEOUT_S", "MEMORY_MAX_TOKENS", "LOCAL_MODEL_PARALLEL",
                 "LOCAL_MODEL_CONTEXT", "OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY", "OLLAMA_HOST",
                 "OLLAMA_MODEL", "AUTH_DISCOVERY_URL", "AUTH_ALLOWED_AUDIENCES", "AUTH_ALLOWED_CLIENTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SESSION_DB", str(tmp_path / "env-sessions.db"))


# -- stores ------------------------------------------------------------------------------------

@dataclass
class StoreFactory:
    """Builds a store of one backend; ``make(ttl=...)`` may be called more than once (restarts)."""

    name: str
    make: Callable[..., SessionStore]
    durable: bool = True  # keeps turns across a restart (a new store object on the same data)
    #: non-empty: why SESSION_TTL does not apply to this backend (the contract's TTL test is skipped)
    no_session_ttl: str = ""
    #: non-empty: why a store object does not see a clear made through another one (a replica) when it writes
    no_shared_generations: str = ""
    cleanup: Callable[[], None] = lambda: None  # removes what the test left behind (run after the test)


def _memory_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return StoreFactory("memory", lambda ttl=None: InMemoryStore(ttl=ttl), durable=False)


def _sqlite_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return StoreFactory("sqlite", lambda ttl=None: SQLiteStore(tmp_path / "sessions.db", ttl=ttl))


def _redis_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A real redis-server; every test gets its own key prefix, deleted afterwards."""
    url = request.getfixturevalue("redis_url")
    prefix = unique_prefix()
    return StoreFactory("redis", lambda ttl=None: RedisStore.from_url(url, key_prefix=prefix, ttl=ttl),
                        cleanup=lambda: delete_prefix(url, prefix))


def _redis_cluster_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A real 3-master Redis Cluster (one per test run); every test gets its own key prefix."""
    url = request.getfixturevalue("redis_cluster").url
    prefix = unique_prefix()
    return StoreFactory("redis-cluster",
                        lambda ttl=None: RedisStore.from_url(url, key_prefix=prefix, ttl=ttl, cluster=True),
                        cleanup=lambda: delete_cluster_prefix(url, prefix))


def unique_table() -> str:
    return f"sessions-{uuid.uuid4().hex[:12]}"


def _dynamodb_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """DynamoDB Local (one per test run); every test gets a table of its own, deleted afterwards."""
    engine: DynamoDBLocal = request.getfixturevalue("dynamodb_local")
    client = engine.client()
    table = unique_table()
    create_table(client, table)
    return StoreFactory("dynamodb", lambda ttl=None: DynamoDBStore(client, table, ttl=ttl),
                        cleanup=lambda: client.delete_table(TableName=table))


@functools.lru_cache(maxsize=1)
def boto3_session() -> boto3.Session:
    """One boto3 session for every test client: the service model is loaded once."""
    return boto3.Session(region_name="us-west-2")


def agentcore_store(service: FakeMemoryService) -> AgentCoreStore:
    """An AgentCoreStore whose SDK-built client is answered by ``service`` through a Stubber."""
    store = AgentCoreStore(MEMORY_ID, region_name="us-west-2", boto3_session=boto3_session())
    service.attach(store.manager._data_plane_client)
    return store


def _agentcore_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    service = FakeMemoryService()  # shared by every make(): a reopened store sees the same service
    return StoreFactory(
        "agentcore", lambda ttl=None: agentcore_store(service),
        no_session_ttl="AgentCore Memory expires events by the memory resource's eventExpiryDuration "
                       "(days, set when the memory is created), not by SESSION_TTL",
        no_shared_generations="AgentCore Memory has no conditional write: generations are per process "
                              "(the runtime routes a session to one instance; docs/architecture.md)",
    )


STORE_FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], StoreFactory]] = {
    "memory": _memory_factory,
    "sqlite": _sqlite_factory,
    "redis": _redis_factory,
    "agentcore": _agentcore_factory,
    "dynamodb": _dynamodb_factory,
    "redis-cluster": _redis_cluster_factory,
}


def start_or_skip(engine, what: str):  # -> the started engine
    """Start a test engine; a missing tool skips (naming it), except where ``REQUIRE_TEST_SERVICES`` is set
    (``.ci/run`` sets it: in CI a missing engine fails the run loudly)."""
    try:
        return engine.start()
    except MissingTool as e:
        if os.environ.get("REQUIRE_TEST_SERVICES", "").strip() not in ("", "0"):
            pytest.fail(f"{what}: {e} (REQUIRE_TEST_SERVICES is set)", pytrace=False)
        pytest.skip(f"{what}: {e}")


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    """DynamoDB Local on a free loopback port, in memory, for the whole run; stopped by pid."""
    engine = start_or_skip(DynamoDBLocal(), "DynamoDB Local")
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster on free loopback ports for the whole run; stopped by pid."""
    cluster = start_or_skip(RedisCluster(tmp_path_factory.mktemp("redis-cluster")), "Redis Cluster")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The redis-server on 127.0.0.1:6379 if it answers PING, else a private one for this run."""
    if answers_ping("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(params=list(STORE_FACTORIES))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = STORE_FACTORIES[request.param](request, tmp_path)
    yield factory
    factory.cleanup()


#: the first four backends: enough for tests of the request path alone (parsing, streaming, the
#: handler), whose code is the same whatever the store; the contract suite and every test that reaches
#: a store's own behaviour run on all of STORE_FACTORIES
REQUEST_PATH_BACKENDS = ("memory", "sqlite", "redis", "agentcore")


def store_factory_over(names: tuple[str, ...]):  # -> a pytest fixture
    """A ``store_factory`` fixture over ``names`` only; a module assigns it to ``store_factory`` to narrow its runs."""

    @pytest.fixture(params=list(names), name="store_factory")
    def narrowed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
        factory = STORE_FACTORIES[request.param](request, tmp_path)
        yield factory
        factory.cleanup()

    return narrowed


@pytest.fixture(params=[name for name, f in STORE_FACTORIES.items() if f is not _memory_factory])
def durable_store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Every backend that keeps turns across a restart (all but ``memory``)."""
    factory = STORE_FACTORIES[request.param](request, tmp_path)
    yield factory
    factory.cleanup()


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
    a.folds.close(10)  # a fold still running must not outlive its test's store


@pytest.fixture
def client(assistant: Assistant) -> Iterator[TestClient]:
    with TestClient(agent.app) as c:
        yield c


@pytest.fixture
def unique_session() -> Callable[[], str]:
    return lambda: f"s-{uuid.uuid4().hex[:12]}"
