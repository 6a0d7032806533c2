"""The actor's own data, all of it: ``export`` (everything stored for the caller, paged) and ``erase``
(all of it deleted), through POST /invocations on every session backend (``STORE_FACTORIES``: the
in-process store, SQLite, a real redis-server and Redis Cluster, DynamoDB Local, AgentCore through the
Stubber), with local long-term memory; then across two replicas, a restart, two real servers on one
SQLite file, and AgentCore's own long-term records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import agent
from core.settings import Settings
from longterm.agentcore import AgentCoreLongTermMemory
from longterm.local import LocalLongTermMemory
from memory.base import SessionStore, Summary
from service import Assistant
from tests.conftest import StoreFactory, agentcore_store, boto3_session
from tests.helpers.agentcore_fake import MEMORY_ID
from tests.helpers.agentcore_records_fake import FakeRecordService
from tests.helpers.longterm_helpers import local_ltm
from tests.helpers.redis_server import delete_prefix, unique_prefix
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.server import Server
from tests.test_longterm_http import ctx

ALICE = "alice"
TOLD = {"trip": ["I am planning a trip to Oslo in May", "My passport expires in June"],
        "cello": ["My daughter Ingrid plays the cello"]}


def invoke(http: TestClient, body: dict, session: str | None = None, **headers: str):
    """POST ``body`` as ASCII JSON (a lone surrogate travels as the ``\\ud800`` escape a client sends)."""
    if session is not None:
        headers["X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"] = session
    return http.post("/invocations", content=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json", **headers})


def assistant_on(settings: Settings, store: SessionStore, ltm: LocalLongTermMemory | None) -> Assistant:
    return Assistant(replace(settings, memory_backend=store.name), store, ScriptedModel(echo=True), ltm)


class Replica:
    """One server's Assistant served through a TestClient (``agent.app`` serves one assistant at a time)."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant

    def post(self, body: dict, session: str | None = None) -> tuple[int, Any]:
        agent.set_assistant(self.assistant)
        try:
            with TestClient(agent.app) as http:
                response = invoke(http, body, session)
                return response.status_code, response.json()
        finally:
            agent.set_assistant(None)

    def ok(self, body: dict, session: str | None = None) -> dict:
        status, answer = self.post(body, session)
        assert status == 200, answer
        return answer

    def export_all(self, actor: str = ALICE, limit: int = 1) -> dict[str, list]:
        """Every page of ``export``, following ``next_cursor``: the sessions and the records, in page order."""
        sessions: list[dict] = []
        memories: list[dict] = []
        cursor = None
        for _ in range(100):
            page = self.ok({"action": "export", "actor_id": actor, "limit": limit, "cursor": cursor})
            assert page["action"] == "export" and page["actor_id"] == actor
            sessions += page["sessions"]
            memories += page["memories"]
            cursor = page["next_cursor"]
            if cursor is None:
                return {"sessions": sessions, "memories": memories}
        raise AssertionError("export never ended")

    def close(self) -> None:
        self.assistant.close()


def tell(replica: Replica, actor: str = ALICE) -> None:
    """The actor's sessions (one turn sent with an idempotency key), and a rolling summary in one of them."""
    for session, messages in TOLD.items():
        for n, message in enumerate(messages):
            replica.ok({"message": message, "actor_id": actor, "idempotency_key": f"{session}-{n}"}, session)
    assert replica.assistant.store.put_summary(actor, "trip", Summary("Ana plans Oslo in May", 1))


def turns_of(session: dict) -> list[tuple[int, str, str]]:
    return [(t["turn"], t["user"], t["assistant"]) for t in session["turns"]]


def assert_everything_exported(exported: dict[str, list], with_memories: bool = True) -> None:
    by_id = {s["session_id"]: s for s in exported["sessions"]}
    assert set(by_id) == set(TOLD)
    for session, messages in TOLD.items():
        assert turns_of(by_id[session]) == [(n, m, f"You said '{m}'") for n, m in enumerate(messages, 1)]
        assert by_id[session]["message_count"] == len(messages)
    assert by_id["trip"]["summary"] == {"text": "Ana plans Oslo in May", "through_turn": 1}
    assert by_id["cello"]["summary"] is None
    if with_memories:
        said = {m for messages in TOLD.values() for m in messages}
        assert {(m["text"], m["role"]) for m in exported["memories"]} == \
            {(m, "user") for m in said} | {(f"You said '{m}'", "assistant") for m in said}
        assert all(set(m) == {"record_id", "text", "role", "session_id", "turn", "created_at"}
                   for m in exported["memories"])


def assert_erased(replica: Replica) -> None:
    assert replica.export_all() == {"sessions": [], "memories": []}
    assert replica.ok({"action": "list_sessions", "actor_id": ALICE})["sessions"] == []
    if replica.assistant.ltm is not None:
        assert replica.ok({"action": "search_memory", "query": "Oslo passport cello", "actor_id": ALICE})[
            "memories"] == []


# -- every backend -------------------------------------------------------------------------------

def test_export_then_erase_then_export_is_empty_on_every_backend(store_factory: StoreFactory, settings: Settings,
                                                                  tmp_path: Path) -> None:
    replica = Replica(assistant_on(settings, store_factory.make(), local_ltm(tmp_path / "records.db")))
    try:
        tell(replica)
        tell(replica, "bob")
        assert_everything_exported(replica.export_all(limit=1))  # one session, or one record, a page
        assert_everything_exported(replica.export_all(limit=100))

        erased = replica.ok({"action": "erase", "actor_id": ALICE})
        assert erased == {"action": "erase", "actor_id": ALICE,
                          "deleted": {"sessions": 2, "turns": 3, "memories": 6}}
        assert_erased(replica)
        assert_everything_exported(replica.export_all("bob"))  # another actor keeps everything

        # the stored idempotent replies went too: the same key stores a new turn, not a replay
        again = replica.ok({"message": "I am planning a trip to Oslo in May", "actor_id": ALICE,
                            "idempotency_key": "trip-0"}, "trip")
        assert again["message_count"] == 1 and not again.get("replayed")
        assert replica.ok({"action": "erase", "actor_id": ALICE})["deleted"] == \
            {"sessions": 1, "turns": 1, "memories": 2}
    finally:
        replica.close()


def test_erase_on_one_replica_is_seen_by_another_and_after_a_restart(durable_store_factory: StoreFactory,
                                                                      settings: Settings, tmp_path: Path) -> None:
    """Two store objects on one SQLite file / Redis / DynamoDB table / AgentCore memory, records in one file."""
    records = tmp_path / "records.db"
    a = Replica(assistant_on(settings, durable_store_factory.make(), local_ltm(records)))
    b = Replica(assistant_on(settings, durable_store_factory.make(), local_ltm(records)))
    try:
        tell(a)
        assert_everything_exported(b.export_all())
        assert b.ok({"action": "erase", "actor_id": ALICE})["deleted"] == {"sessions": 2, "turns": 3, "memories": 6}
        assert_erased(a)
    finally:
        a.close()
        b.close()
    restarted = Replica(assistant_on(settings, durable_store_factory.make(), local_ltm(records)))
    try:
        assert_erased(restarted)
    finally:
        restarted.close()


def test_a_turn_running_while_erase_runs_is_refused_and_stores_nothing(tmp_path: Path, settings: Settings) -> None:
    """``erase`` takes no session slot: it lands while a turn of an erased session is in the model."""
    from memory.sqlite import SQLiteStore
    from tests.test_longterm_http import GatedEcho, while_in_the_model

    gated = GatedEcho()
    assistant = Assistant(settings, SQLiteStore(tmp_path / "sessions.db"), gated, local_ltm(tmp_path / "r.db"))
    replica = Replica(assistant)
    try:
        tell(replica)
        answer, erased = while_in_the_model(
            gated, lambda: assistant.handle({"message": "My passport number is 123", "actor_id": ALICE}, ctx("trip")),
            lambda: assistant.handle({"action": "erase", "actor_id": ALICE}, ctx("x")))
        assert erased["deleted"] == {"sessions": 2, "turns": 3, "memories": 6}
        assert answer.status_code == 409  # the session was erased under it: nothing of the turn is stored
        assert assistant.ltm is not None and assistant.ltm.flush(30)
        assert_erased(replica)
    finally:
        replica.close()


# -- what each kind of page holds, and bad input -------------------------------------------------

@pytest.fixture
def sqlite_replica(settings: Settings, tmp_path: Path) -> Iterator[Replica]:
    from memory.sqlite import SQLiteStore

    replica = Replica(assistant_on(settings, SQLiteStore(tmp_path / "sessions.db"), local_ltm(tmp_path / "r.db")))
    yield replica
    replica.close()


def test_export_pages_the_sessions_first_then_the_records(sqlite_replica: Replica) -> None:
    tell(sqlite_replica)
    first = sqlite_replica.ok({"action": "export", "actor_id": ALICE, "limit": 2})
    assert [s["session_id"] for s in first["sessions"]] == ["cello", "trip"]  # newest activity first
    assert first["memories"] == [] and first["long_term"] is True
    second = sqlite_replica.ok({"action": "export", "actor_id": ALICE, "limit": 2, "cursor": first["next_cursor"]})
    assert second["sessions"] == [] and [m["text"] for m in second["memories"]] == [
        "You said 'My daughter Ingrid plays the cello'", "My daughter Ingrid plays the cello"]  # newest first


def test_an_actor_with_nothing_stored_exports_one_empty_page(sqlite_replica: Replica) -> None:
    assert sqlite_replica.ok({"action": "export", "actor_id": "nobody"}) == {
        "action": "export", "actor_id": "nobody", "sessions": [], "memories": [], "next_cursor": None,
        "long_term": True}
    assert sqlite_replica.ok({"action": "erase", "actor_id": "nobody"})["deleted"] == \
        {"sessions": 0, "turns": 0, "memories": 0}


@pytest.mark.parametrize("fields, says", [
    ({"limit": 0}, "'limit' must be an integer from 1 to 100, got 0"),
    ({"limit": "10"}, "'limit' must be an integer from 1 to 100, got str"),
    ({"limit": -10**500}, "'limit' must be an integer from 1 to 100, got a huge negative integer"),
    ({"cursor": 3}, "'cursor' must be a string"),
    ({"cursor": ["s:x"]}, "'cursor' must be a string"),
    ({"cursor": {"a": {"b": "c"}}}, "'cursor' must be a string"),
    ({"cursor": "\udfff"}, "'cursor' holds a lone surrogate"),
    ({"cursor": "garbage"}, "'cursor' is not a cursor this server issued"),
    ({"cursor": "s:"}, "'cursor' is not a cursor this server issued"),
    ({"cursor": "s:garbage"}, "'cursor' is not a cursor this server issued"),
    ({"cursor": "m:r-1"}, "'cursor' is not a cursor this server issued"),
    ({"cursor": "m:" + "9" * 5000}, "'cursor' is not a cursor this server issued"),
])
def test_bad_export_input_is_a_400_naming_the_field(sqlite_replica: Replica, fields: dict, says: str) -> None:
    status, answer = sqlite_replica.post({"action": "export", "actor_id": ALICE, **fields})
    assert status == 400 and says in answer["error"], answer


def test_erase_refuses_a_bad_actor_and_deletes_nothing(sqlite_replica: Replica) -> None:
    tell(sqlite_replica)
    for actor in (["alice"], "\ud800", 7):
        status, answer = sqlite_replica.post({"action": "erase", "actor_id": actor})
        assert status == 400 and "actor" in answer["error"], answer
    assert_everything_exported(sqlite_replica.export_all())


def test_without_long_term_memory_export_and_erase_cover_the_sessions(settings: Settings, tmp_path: Path) -> None:
    from memory.sqlite import SQLiteStore

    replica = Replica(assistant_on(settings, SQLiteStore(tmp_path / "sessions.db"), None))
    try:
        tell(replica)
        page = replica.ok({"action": "export", "actor_id": ALICE, "limit": 100})
        assert page["long_term"] is False and page["next_cursor"] is None and page["memories"] == []
        assert_everything_exported({"sessions": page["sessions"], "memories": []}, with_memories=False)
        assert replica.ok({"action": "erase", "actor_id": ALICE})["deleted"] == \
            {"sessions": 2, "turns": 3, "memories": None}
        assert_erased(replica)
    finally:
        replica.close()


def test_a_bearer_token_scopes_export_erase_and_the_memory_actions_to_its_subject(sqlite_replica: Replica) -> None:
    from tests.test_identity import bearer

    tell(sqlite_replica)
    tell(sqlite_replica, "bob")
    bobs = sqlite_replica.ok({"action": "list_memories", "actor_id": "bob"})["memories"][0]["record_id"]
    agent.set_assistant(sqlite_replica.assistant)
    try:
        with TestClient(agent.app) as http:
            mine = invoke(http, {"action": "export", "limit": 100}, **bearer(ALICE)).json()
            assert mine["actor_id"] == ALICE and {s["session_id"] for s in mine["sessions"]} == set(TOLD)
            for body in ({"action": "export", "actor_id": "bob"}, {"action": "erase", "actor_id": "bob"},
                         {"action": "list_memories", "actor_id": "bob"},
                         {"action": "delete_memory", "actor_id": "bob", "record_id": bobs}):
                refused = invoke(http, body, **bearer(ALICE))
                assert refused.status_code == 403 and "error" in refused.json(), body
            assert invoke(http, {"action": "delete_memory", "record_id": bobs}, **bearer(ALICE)).status_code == 404
            assert invoke(http, {"action": "erase"}, **bearer(ALICE)).json()["deleted"]["sessions"] == 2
    finally:
        agent.set_assistant(None)
    assert_erased(sqlite_replica)
    assert_everything_exported(sqlite_replica.export_all("bob"))  # bob's data, and his record, untouched


# -- AgentCore Memory's own long-term records ------------------------------------------------------

def test_on_agentcore_export_lists_the_services_records_and_erase_deletes_them(settings: Settings) -> None:
    service = FakeRecordService()
    ltm = AgentCoreLongTermMemory(MEMORY_ID, "/users/{actorId}/", "us-west-2", boto3_session=boto3_session())
    service.attach(ltm.client.gmdp_client)
    replica = Replica(Assistant(replace(settings, memory_backend="agentcore", memory_id=MEMORY_ID),
                                agentcore_store(service), ScriptedModel(echo=True), ltm))
    try:
        replica.ok({"message": "I am planning a trip to Oslo in May", "actor_id": ALICE}, "trip")
        service.extract("/users/alice/facts/", "The user plans a trip to Oslo in May")
        service.extract("/summaries/alice/trip/", "Session trip: Oslo in May")
        service.extract("/users/bob/facts/", "Bob likes Lisbon")
        exported = replica.export_all(limit=100)
        assert [s["session_id"] for s in exported["sessions"]] == ["trip"]
        assert sorted(m["text"] for m in exported["memories"]) == ["Session trip: Oslo in May",
                                                                  "The user plans a trip to Oslo in May"]
        assert replica.ok({"action": "erase", "actor_id": ALICE})["deleted"] == \
            {"sessions": 1, "turns": 1, "memories": 2}
        assert replica.export_all() == {"sessions": [], "memories": []}
        assert [r["content"]["text"] for r in service.records.values()] == ["Bob likes Lisbon"]
    finally:
        replica.close()


# -- two real servers on one SQLite file (or one Redis), then a restart ----------------------------

@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_two_servers_on_one_store_erase_once_and_stay_erased_after_a_restart(tmp_path: Path, backend: str,
                                                                              request: pytest.FixtureRequest) -> None:
    """SQLite: one file (and one records file beside it); Redis: one key prefix, long-term memory off there."""
    env = {"SESSION_DB": str(tmp_path / "sessions.db")}
    if backend == "redis":
        url, prefix = request.getfixturevalue("redis_url"), unique_prefix()
        env.update(MEMORY_BACKEND="redis", REDIS_URL=url, KEY_PREFIX=prefix)
        request.addfinalizer(lambda: delete_prefix(url, prefix))
    memories = 6 if backend == "sqlite" else None
    servers = [Server(env, log_path=tmp_path / f"server-{n}.log").start(timeout=120) for n in range(2)]
    try:
        for session, messages in TOLD.items():
            for message in messages:
                assert servers[0].invoke({"message": message, "actor_id": ALICE}, session)[0] == 200
        status, page = servers[1].invoke({"action": "export", "actor_id": ALICE, "limit": 100})
        assert status == 200 and {s["session_id"] for s in page["sessions"]} == set(TOLD)
        assert servers[1].invoke({"action": "erase", "actor_id": ALICE}) == (200, {
            "action": "erase", "actor_id": ALICE, "deleted": {"sessions": 2, "turns": 3, "memories": memories}})
        assert servers[0].invoke({"action": "export", "actor_id": ALICE})[1]["sessions"] == []
    finally:
        for server in servers:
            server.stop()
    server = Server(env, log_path=tmp_path / "server-2.log").start(timeout=120)
    try:
        assert server.invoke({"action": "export", "actor_id": ALICE}) == (200, {
            "action": "export", "actor_id": ALICE, "sessions": [], "memories": [], "next_cursor": None,
            "long_term": backend == "sqlite"})
    finally:
        server.stop()
