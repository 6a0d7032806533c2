"""AgentCore-only behaviour, offline: botocore's Stubber on the client the SDK builds.

Service calls per turn, the exact requests, counts without our metadata,
paging, summaries, idempotency (metadata look-up, clientToken), listing,
id limits, and failures (stubbed service errors, and real
HTTP on loopback for botocore's standard retries and an unreachable endpoint).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from bedrock_agentcore.runtime.context import RequestContext
from botocore.stub import ANY, Stubber
from starlette.responses import JSONResponse

import agent
from agent import chat_handler
from service import Assistant
from core.settings import Settings
from core.errors import AlreadyStored, ConfigError, StoreUnavailable
from memory.agentcore import AgentCoreStore, InvalidId
from memory.base import StoredReply, Summary
from tests.helpers.agentcore_fake import MEMORY_ID, FakeMemoryService
from tests.conftest import agentcore_store, boto3_session
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.server import free_port

USER, ASSISTANT = MessageRole.USER, MessageRole.ASSISTANT


def exchange(n: int) -> list[ConversationalMessage]:
    return [ConversationalMessage(f"question {n}", USER), ConversationalMessage(f"answer {n}", ASSISTANT)]


@pytest.fixture
def service() -> FakeMemoryService:
    return FakeMemoryService()


@pytest.fixture
def ac_store(service: FakeMemoryService) -> Iterator[AgentCoreStore]:
    store = agentcore_store(service)
    yield store
    store.close()


@pytest.fixture
def ac_assistant(ac_store: AgentCoreStore) -> Iterator[Assistant]:
    settings = replace(Settings.from_env({}), memory_backend="agentcore", memory_id=MEMORY_ID, model_provider="echo")
    a = Assistant(settings, ac_store, ScriptedModel(echo=True))
    agent.set_assistant(a)
    yield a
    agent.set_assistant(None)


def ctx(session_id: str) -> RequestContext:
    return RequestContext(session_id=session_id, request_headers=None)


# -- call count --------------------------------------------------------------------------------

def test_a_plain_turn_costs_one_list_events_and_one_create_event(ac_assistant: Assistant,
                                                                 service: FakeMemoryService) -> None:
    for n in range(1, 4):
        service.calls.clear()
        response = chat_handler({"message": f"message {n}"}, ctx("conv1"))
        assert (response["message_count"], response["history_length"]) == (n, n - 1)
        assert service.operations() == ["ListEvents", "CreateEvent"]
        (_, listing), (_, create) = service.calls
        assert "nextToken" not in listing  # one page
        assert [p["conversational"]["role"] for p in create["payload"]] == ["USER", "ASSISTANT"]
        assert create["metadata"] == {"user_messages": {"stringValue": str(n)}}


def test_two_calls_per_turn_also_right_after_a_restart(service: FakeMemoryService) -> None:
    """A new store object (nothing remembered) reads the count from the newest event's metadata."""
    first = agentcore_store(service)
    for n in range(5):
        first.add_turns("alice", "s1", exchange(n))
    settings = replace(Settings.from_env({}), memory_backend="agentcore", memory_id=MEMORY_ID)
    agent.set_assistant(Assistant(settings, agentcore_store(service), ScriptedModel(echo=True)))
    try:
        service.calls.clear()
        response = chat_handler({"message": "again", "actor_id": "alice"}, ctx("s1"))
    finally:
        agent.set_assistant(None)
    assert (response["message_count"], response["history_length"]) == (6, 5)
    assert service.operations() == ["ListEvents", "CreateEvent"]


def test_the_exact_requests_of_one_turn_with_a_plain_stubber() -> None:
    """Pinned with Stubber's own queue: request parameters and responses checked against the service model."""
    ac_store = AgentCoreStore(MEMORY_ID, "us-west-2", boto3_session=boto3_session())
    client = ac_store.manager._data_plane_client
    ids = {"memoryId": MEMORY_ID, "actorId": "alice", "sessionId": "s1"}
    older = {**ids, "eventId": "1000#0a", "eventTimestamp": datetime(2026, 1, 1, tzinfo=timezone.utc),
             "payload": [{"conversational": {"content": {"text": "hi"}, "role": "USER"}},
                         {"conversational": {"content": {"text": "hello"}, "role": "ASSISTANT"}}],
             "metadata": {"user_messages": {"stringValue": "41"}}}
    created = {**ids, "eventId": "2000#0b", "eventTimestamp": datetime(2026, 1, 2, tzinfo=timezone.utc),
               "payload": []}
    with Stubber(client) as stubber:
        stubber.add_response("list_events", {"events": [older]}, {
            **ids, "maxResults": 20, "includePayloads": True,
            "filter": {"eventMetadata": [{"left": {"metadataKey": "summary_through"}, "operator": "NOT_EXISTS"}]},
        })
        stubber.add_response("create_event", {"event": created}, {
            **ids, "eventTimestamp": ANY,
            "payload": [{"conversational": {"content": {"text": "next"}, "role": "USER"}},
                        {"conversational": {"content": {"text": "You said 'next'"}, "role": "ASSISTANT"}}],
            "metadata": {"user_messages": {"stringValue": "42"}},
        })
        turns = ac_store.get_last_k_turns("alice", "s1", 10)
        count = ac_store.add_turns("alice", "s1", [ConversationalMessage("next", USER),
                                                   ConversationalMessage("You said 'next'", ASSISTANT)])
        stubber.assert_no_pending_responses()
    assert [[m.text for m in t] for t in turns] == [["hi", "hello"]]
    assert count == 42


# -- order and counts --------------------------------------------------------------------------

def test_turns_come_back_oldest_first_user_before_assistant(ac_store: AgentCoreStore,
                                                            service: FakeMemoryService) -> None:
    ac_store.add_turns("alice", "s1", [ConversationalMessage("q1", USER)])
    ac_store.add_turns("alice", "s1", [ConversationalMessage("a1", ASSISTANT)])
    ac_store.add_turns("alice", "s1", exchange(2))
    service.calls.clear()
    turns = ac_store.get_last_k_turns("alice", "s1", 5)
    # the service listed them newest first
    listed = service.calls[0][1]
    assert listed["maxResults"] == 10
    assert [[(m.role, m.text) for m in t] for t in turns] == [
        [(USER, "q1"), (ASSISTANT, "a1")], [(USER, "question 2"), (ASSISTANT, "answer 2")]]


def test_counts_are_right_for_events_written_without_our_metadata(ac_store: AgentCoreStore,
                                                                  service: FakeMemoryService) -> None:
    sdk = ac_store.manager  # another writer: the SDK directly, no count in the metadata
    for n in range(3):
        sdk.add_turns("alice", "s1", exchange(n))
    sdk.add_turns("alice", "s1", [ConversationalMessage("a note", ASSISTANT)])
    assert ac_store.add_turns("alice", "s1", exchange(3)) == 4
    sdk.add_turns("alice", "s1", exchange(4))  # newer than our last count
    fresh = agentcore_store(service)
    assert fresh.add_turns("alice", "s1", exchange(5)) == 6
    assert [t[0].text for t in fresh.get_last_k_turns("alice", "s1", 2)] == ["question 4", "question 5"]


def test_a_write_without_a_recent_read_reads_only_the_newest_event(ac_store: AgentCoreStore,
                                                                   service: FakeMemoryService) -> None:
    for n in range(30):
        ac_store.add_turns("alice", "s1", exchange(n))
    fresh = agentcore_store(service)
    service.calls.clear()
    assert fresh.add_turns("alice", "s1", exchange(30)) == 31
    assert service.operations() == ["ListEvents", "CreateEvent"]
    assert service.calls[0][1]["maxResults"] == 1


def test_long_turns_spread_over_many_events_still_give_k_whole_turns(ac_store: AgentCoreStore) -> None:
    for n in range(4):
        ac_store.add_turns("alice", "s1", [ConversationalMessage(f"q{n}", USER)])
        for part in range(5):
            ac_store.add_turns("alice", "s1", [ConversationalMessage(f"a{n}.{part}", ASSISTANT)])
    turns = ac_store.get_last_k_turns("alice", "s1", 2)
    assert [[m.text for m in t] for t in turns] == [
        ["q2"] + [f"a2.{p}" for p in range(5)], ["q3"] + [f"a3.{p}" for p in range(5)]]


def test_a_failed_write_is_not_counted(ac_assistant: Assistant, service: FakeMemoryService) -> None:
    chat_handler({"message": "one"}, ctx("conv1"))
    service.fail("CreateEvent", "ThrottledException", 429)
    failed = chat_handler({"message": "two"}, ctx("conv1"))
    assert isinstance(failed, JSONResponse) and failed.status_code == 503
    error = json.loads(failed.body)["error"]
    assert "session store 'agentcore' is unavailable" in error and "ThrottledException" in error
    ok = chat_handler({"message": "two"}, ctx("conv1"))
    assert (ok["message_count"], ok["history_length"]) == (2, 1)


@pytest.mark.parametrize(("operation", "code", "status"), [
    ("ListEvents", "ServiceException", 500),
    ("ListEvents", "ThrottledException", 429),
    ("ListEvents", "AccessDeniedException", 403),
    ("ListEvents", "ResourceNotFoundException", 404),
    ("CreateEvent", "ServiceException", 500),
])
def test_service_failures_are_503_json_naming_the_store(ac_assistant: Assistant, service: FakeMemoryService,
                                                        operation: str, code: str, status: int) -> None:
    service.fail(operation, code, status)
    response = chat_handler({"message": "hello"}, ctx("conv1"))
    assert isinstance(response, JSONResponse) and response.status_code == 503
    assert json.loads(response.body) == {"error": f"session store 'agentcore' is unavailable: {code}: injected"}
    assert chat_handler({"message": "hello"}, ctx("conv1"))["message_count"] == 1


# -- delete and summaries ----------------------------------------------------------------------

def test_delete_session_pages_through_every_event(ac_store: AgentCoreStore, service: FakeMemoryService) -> None:
    for n in range(250):
        ac_store.add_turns("alice", "big", [ConversationalMessage(f"m{n}", USER)])
    ac_store.put_summary("alice", "big", Summary("long talk", 200))
    ac_store.add_turns("alice", "other", exchange(1))
    service.calls.clear()
    assert ac_store.delete_session("alice", "big") == 250
    ops = service.operations()
    assert ops.count("ListEvents") == 3 and ops.count("DeleteEvent") == 251
    assert service.events[(MEMORY_ID, "alice", "big")] == []
    assert ac_store.get_summary("alice", "big") is None
    assert ac_store.add_turns("alice", "big", exchange(1)) == 1
    assert len(ac_store.list_events("alice", "other")) == 1


def test_summaries_never_show_up_as_turns_and_replace_each_other(ac_store: AgentCoreStore,
                                                                 service: FakeMemoryService) -> None:
    ac_store.add_turns("alice", "s1", exchange(1))
    ac_store.put_summary("alice", "s1", Summary("first", 1))
    ac_store.put_summary("alice", "s1", Summary("second", 1))
    assert ac_store.get_summary("alice", "s1") == Summary("second", 1)
    assert [len(e.messages) for e in ac_store.list_events("alice", "s1")] == [2]
    assert len(ac_store.get_last_k_turns("alice", "s1", 10)) == 1
    stored = service.events[(MEMORY_ID, "alice", "s1")]
    assert len(stored) == 2  # the turn and the newest summary; the older summary was deleted
    assert agentcore_store(service).add_turns("alice", "s1", exchange(2)) == 2


# -- ids ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("actor_id", "session_id", "needle"), [
    ("alice", "a:b", "session id"),
    ("alice", "", "session id"),
    ("alice", "x" * 101, "session id"),
    ("alice", "-lead", "session id"),
    ("a::b", "s1", "actor id"),
    ("-alice", "s1", "actor id"),
    ("a" * 256, "s1", "actor id"),
])
def test_ids_the_service_refuses_are_caught_before_any_call(ac_store: AgentCoreStore, service: FakeMemoryService,
                                                            actor_id: str, session_id: str, needle: str) -> None:
    with pytest.raises(InvalidId) as info:
        ac_store.add_turns(actor_id, session_id, exchange(1))
    assert needle in str(info.value) and "AgentCore Memory" in str(info.value)
    with pytest.raises(InvalidId):
        ac_store.put_summary(actor_id, session_id, Summary("x", 1))
    # nothing can be stored under such an id, so reads find nothing
    assert ac_store.get_last_k_turns(actor_id, session_id, 5) == []
    assert ac_store.list_events(actor_id, session_id) == []
    assert ac_store.get_summary(actor_id, session_id) is None
    assert ac_store.delete_session(actor_id, session_id) == 0
    assert service.calls == []


def test_actor_ids_with_the_services_extra_characters_work(ac_store: AgentCoreStore) -> None:
    assert ac_store.add_turns("org/alice:admin", "s1", exchange(1)) == 1
    assert ac_store.get_last_k_turns("org/alice", "s1", 5) == []


@pytest.mark.parametrize("memory_id", ["short", "mem-123456789012", "1abc-defghijklm", "mem-abcdefghi!"])
def test_a_memory_id_the_service_refuses_is_a_config_error(memory_id: str) -> None:
    with pytest.raises(ConfigError) as info:
        AgentCoreStore(memory_id, "us-west-2")
    assert "MEMORY_ID" in str(info.value)


def test_oversized_messages_are_refused_before_any_call(ac_store: AgentCoreStore, service: FakeMemoryService) -> None:
    with pytest.raises(ValueError, match="100000"):
        ac_store.add_turns("alice", "s1", [ConversationalMessage("x" * 100_001, USER)])
    with pytest.raises(ValueError, match="at most 100 messages"):
        ac_store.add_turns("alice", "s1", [ConversationalMessage("x", USER)] * 101)
    assert service.calls == []


# -- real HTTP on loopback: retries, unreachable endpoint, no credentials -------------------------

class _Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next scripted (status, error code or None)."""

    script: list[tuple[int, str | None]] = []
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(self.path)
        status, code = type(self).script.pop(0) if type(self).script else (200, None)
        body = json.dumps({"message": "scripted"} if code else {"events": []}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if code:
            self.send_header("x-amzn-ErrorType", code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def loopback_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Scripted]]:
    handler = type("Handler", (_Scripted,), {"script": [], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    yield handler
    server.shutdown()
    server.server_close()


def test_the_sdk_client_uses_botocore_standard_retries(loopback_service: type[_Scripted]) -> None:
    store = AgentCoreStore(MEMORY_ID, "us-west-2")
    assert store.manager._data_plane_client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    loopback_service.script = [(500, "ServiceException"), (503, "ServiceException")]
    assert store.get_last_k_turns("alice", "s1", 5) == []  # third attempt answered
    assert len(loopback_service.seen) == 3
    loopback_service.seen.clear()
    loopback_service.script = [(500, "ServiceException")] * 3
    with pytest.raises(StoreUnavailable) as info:
        store.get_last_k_turns("alice", "s1", 5)
    assert "ServiceException" in str(info.value) and len(loopback_service.seen) == 3


def test_an_unreachable_endpoint_is_a_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with pytest.raises(StoreUnavailable) as info:
        AgentCoreStore(MEMORY_ID, "us-west-2").add_turns("alice", "s1", exchange(1))
    assert "EndpointConnectionError" in str(info.value)


def test_missing_credentials_are_a_503(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                       loopback_service: type[_Scripted]) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StoreUnavailable) as info:
        AgentCoreStore(MEMORY_ID, "us-west-2").get_last_k_turns("alice", "s1", 5)
    assert "NoCredentialsError" in str(info.value)
    assert loopback_service.seen == []


# -- generations, idempotency, listing ------------------------------------------------------------

def test_load_window_and_a_checked_write_still_cost_two_calls(ac_store: AgentCoreStore,
                                                              service: FakeMemoryService) -> None:
    for n in range(1, 4):
        service.calls.clear()
        window = ac_store.load_window("alice", "s1", 10)
        assert window.message_count == n - 1
        assert ac_store.add_turns("alice", "s1", exchange(n), generation=window.generation) == n
        assert service.operations() == ["ListEvents", "CreateEvent"]
    fresh = agentcore_store(service)  # after a restart too
    service.calls.clear()
    window = fresh.load_window("alice", "s1", 10)
    assert (window.message_count, fresh.add_turns("alice", "s1", exchange(4), generation=window.generation)) == (3, 4)
    assert service.operations() == ["ListEvents", "CreateEvent"]


def test_a_keyed_turn_costs_one_call_more_and_its_retry_stores_nothing(ac_store: AgentCoreStore,
                                                                        service: FakeMemoryService) -> None:
    key = "retry #1: é/ü"  # characters event metadata refuses: the metadata holds the key's SHA-256
    window = ac_store.load_window("alice", "s1", 10)
    service.calls.clear()
    assert ac_store.add_turns("alice", "s1", exchange(1), generation=window.generation, idempotency_key=key) == 1
    assert service.operations() == ["ListEvents", "CreateEvent"]  # the count was remembered from the window
    (_, lookup), (_, create) = service.calls
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert lookup["filter"]["eventMetadata"] == [{"left": {"metadataKey": "request_key"}, "operator": "EQUALS_TO",
                                                  "right": {"metadataValue": {"stringValue": digest}}}]
    assert create["metadata"]["request_key"] == {"stringValue": digest}
    assert len(create["clientToken"]) == 64
    service.calls.clear()
    with pytest.raises(AlreadyStored) as info:
        ac_store.add_turns("alice", "s1", exchange(1), idempotency_key=key)
    assert (info.value.message_count, info.value.reply) == (1, "answer 1")
    assert service.operations() == ["ListEvents"]
    assert len(service.events[(MEMORY_ID, "alice", "s1")]) == 1


def test_a_replica_racing_the_same_keyed_turn_is_stopped_by_the_client_token(service: FakeMemoryService) -> None:
    a = agentcore_store(service)
    b = AgentCoreStore(MEMORY_ID, region_name="us-west-2", boto3_session=boto3_session())
    stubber = service.attach(b.manager._data_plane_client)
    a.add_turns("alice", "s1", exchange(1), idempotency_key="k")
    # b looked the key up just before a stored it: its look-up found nothing
    stubber.add_response("list_events", {"events": []})
    service.calls.clear()
    with pytest.raises(AlreadyStored) as info:
        b.add_turns("alice", "s1", exchange(1), idempotency_key="k")
    assert (info.value.message_count, info.value.reply) == (1, "answer 1")
    assert "CreateEvent" in service.operations()  # the service took the token and stored nothing
    assert len(service.events[(MEMORY_ID, "alice", "s1")]) == 1


def test_a_keyed_turn_after_a_clear_on_another_replica_is_stored_again(service: FakeMemoryService) -> None:
    a, b = agentcore_store(service), agentcore_store(service)
    a.add_turns("alice", "s1", exchange(1), idempotency_key="k")
    b.delete_session("alice", "s1")
    # a's generation did not move, so its clientToken is the one the service already saw: stale
    assert a.add_turns("alice", "s1", exchange(2), idempotency_key="k") == 1
    assert [[m.text for m in e.messages] for e in b.list_events("alice", "s1")] == [["question 2", "answer 2"]]
    assert b.find_request("alice", "s1", "k") == StoredReply(1, "answer 2")


def test_a_checked_summary_costs_one_more_call(ac_store: AgentCoreStore, service: FakeMemoryService) -> None:
    for n in range(1, 4):
        ac_store.add_turns("alice", "s1", exchange(n))
    service.calls.clear()
    assert ac_store.put_summary("alice", "s1", Summary("so far", 2), generation=0) is True
    assert service.operations() == ["ListEvents", "CreateEvent", "ListEvents"]


def test_list_sessions_calls_per_page(ac_store: AgentCoreStore, service: FakeMemoryService) -> None:
    for n in range(120):
        ac_store.add_turns("alice", f"s{n:03d}", exchange(n))
    ac_store.add_turns("bob", "theirs", exchange(1))
    ac_store.delete_session("alice", "s000")
    service.calls.clear()
    page = ac_store.list_sessions("alice", 3)
    assert [(i.session_id, i.message_count, i.first_message) for i in page.sessions] == [
        ("s119", 1, "question 119"), ("s118", 1, "question 118"), ("s117", 1, "question 117")]
    listings = [p for op, p in service.calls if op == "ListSessions"]
    assert len(listings) == 2 and all(p["maxResults"] == 100 and p["filter"] == {"eventFilter": "HAS_EVENTS"}
                                      for p in listings)
    # the newest event of each of the actor's 119 sessions, then the first turn of the 3 on the page
    assert service.operations().count("ListEvents") == 119 + 3
    assert all(p["actorId"] == "alice" for _, p in service.calls)
