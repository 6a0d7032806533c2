"""Long-term memory through POST /invocations, against the real ``service.Assistant``.

Cross-session recall, what each kind of turn records (plain, streamed, truncated; not a replay, a 409, a
turn that cleared itself), isolation (other actors, forged tool input, a JWT), ``forget`` and
``clear_session`` beating writes in flight or still queued (on this replica and on a second one sharing
the files), restart durability, bad input, and a server without long-term memory.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterable, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bedrock_agentcore.runtime.context import RequestContext
from starlette.testclient import TestClient
from strands.types.content import Messages
from strands.types.streaming import StreamEvent

import agent
from core.settings import Settings
from longterm.agentcore import AgentCoreLongTermMemory
from longterm.local import LocalLongTermMemory
from longterm.sqlite_store import SQLiteLongTermStore
from service import Assistant
from service.turn import SYSTEM_PROMPT
from tests.helpers.agentcore_fake import MEMORY_ID
from tests.helpers.agentcore_records_fake import FakeRecordService
from tests.conftest import ACTOR_HEADER, agentcore_store, boto3_session
from tests.helpers.http_load import in_thread
from tests.helpers.longterm_helpers import embedder
from tests.helpers.longterm_http import http, ltm_assistant, ltm_settings, replica  # noqa: F401 (fixtures)
from tests.helpers.redis_server import delete_prefix, unique_prefix
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.session_helpers import result_text, tool_results
from tests.test_http import invoke
from tests.test_identity import bearer
from tests.test_sqlite_store import remove_database
from tests.test_streaming import sse_events

FACT = "Remember this: my daughter's name is Ingrid and she plays the cello"
QUESTION = "What instrument does my daughter play?"


def say(http: TestClient, actor: str, session: str, message: str, **extra: Any) -> dict:
    response = invoke(http, {"message": message, "actor_id": actor, **extra}, session)
    assert response.status_code == 200, response.text
    return response.json()


def search(http: TestClient, actor: str, query: str, **extra: object) -> list[dict]:
    response = invoke(http, {"action": "search_memory", "query": query, "actor_id": actor, **extra}, "any")
    assert response.status_code == 200, response.text
    return response.json()["memories"]


def stored(assistant: Assistant, actor: str) -> list:
    """Every record of the actor in the store, once the writer is idle (a search collapses near-duplicates)."""
    assert assistant.ltm is not None and assistant.ltm.flush(30)
    store = assistant.ltm.store
    return list(store.fetch(actor, [int(i) for i in store.actor_index(actor).ids]).values())


def recorded(assistant: Assistant, actor: str, query: str = "daughter cello Ingrid stamps Norway") -> set[tuple]:
    """(session, turn, role) of every record of the actor, once the writer is idle (``query``: what the test
    looks for, kept for reading; every record is listed)."""
    return {(r.session_id, r.turn, r.role) for r in stored(assistant, actor)}


def ctx(session: str, **headers: str) -> RequestContext:
    return RequestContext(session_id=session, request_headers=headers or None)


class GatedEcho(ScriptedModel):
    """An echoing model whose next call waits for ``release`` once ``gate`` is set (a turn in flight)."""

    def __init__(self) -> None:
        super().__init__(echo=True)
        self.gate = False
        self.entered = threading.Event()
        self.release = threading.Event()

    async def stream(self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[StreamEvent]:
        if self.gate:
            self.gate = False
            self.entered.set()
            assert await asyncio.to_thread(self.release.wait, 30)
        async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
            yield event


class GatedRecords(SQLiteLongTermStore):
    """The records' SQLite file, whose vectors wait for ``release`` before they are added.

    The exchange's text is stored with the turn; the background writer holds the reply's vector (embedded,
    about to be added): the moment a ``forget`` or a clear must still win.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()

    def add_vectors(self, vectors: Sequence[tuple[str, np.ndarray]]) -> int:
        if not self.release.is_set():
            self.entered.set()
            assert self.release.wait(30)
        return super().add_vectors(vectors)


def while_in_the_model(gated: GatedEcho, turn: Callable[[], Any], meanwhile: Callable[[], Any]) -> tuple[Any, Any]:
    """Run ``turn`` on a thread, call ``meanwhile`` while its model call is held, then let it finish.

    Returns the turn's answer and what ``meanwhile`` returned.
    """
    gated.gate = True
    thread, out = in_thread(turn)
    assert gated.entered.wait(30)
    during = meanwhile()
    gated.release.set()
    thread.join(30)
    return out["result"], during


# -- recall across sessions ---------------------------------------------------------------------

def test_a_fact_told_in_one_session_is_recalled_in_the_next(http: TestClient, ltm_assistant: Assistant,
                                                             model: ScriptedModel) -> None:
    say(http, "alice", "s1", "Hello, I am Alice")
    say(http, "alice", "s1", FACT)
    say(http, "alice", "s1", "What is the weather like in Bergen?")
    ltm_assistant.ltm.flush()
    memories = search(http, "alice", "daughter cello")
    assert FACT in memories[0]["text"]  # the user's message, or the echo model's reply that repeats it
    assert memories[0]["session_id"] == "s1" and memories[0]["turn"] == 2
    assert set(memories[0]) >= {"text", "session_id", "score", "created_at"}
    answer = say(http, "alice", "s2", QUESTION)
    assert answer["memories_used"] >= 1  # with the default LTM_MIN_SCORE
    assert answer["history_length"] == 0  # a new session: the fact came from long-term memory
    assert FACT in model.memory_block(-1) and model.system_prompts[-1] == SYSTEM_PROMPT  # quoted, not system
    assert search(http, "bob", "daughter cello") == []
    assert say(http, "bob", "b1", QUESTION)["memories_used"] == 0
    assert model.memory_block(-1) == "" and model.system_prompts[-1] == SYSTEM_PROMPT


def test_explain_lists_the_recalled_records(http: TestClient, ltm_assistant: Assistant) -> None:
    say(http, "alice", "s1", FACT)
    ltm_assistant.ltm.flush()
    answer = say(http, "alice", "s2", QUESTION, explain=True)
    items = answer["memory"]["long_term"]
    assert len(items) == answer["memories_used"] >= 1
    assert all(set(item) == {"record_id", "session_id", "turn", "score", "role", "text"} for item in items)
    assert {(item["session_id"], item["turn"]) for item in items} == {("s1", 1)}
    assert all(isinstance(item["record_id"], str) and 0 < item["score"] <= 1 for item in items)
    assert answer["memory"]["window"] == {"turns": []}


def test_the_turns_in_the_window_are_not_recalled_again(http: TestClient, ltm_assistant: Assistant) -> None:
    say(http, "alice", "s1", FACT)
    ltm_assistant.ltm.flush()
    same_session = say(http, "alice", "s1", QUESTION, explain=True)
    assert same_session["memory"]["window"] == {"turns": [1]}
    assert same_session["memories_used"] == 0 and same_session["memory"]["long_term"] == []


def test_the_model_cannot_search_another_actors_memory_with_forged_tool_input(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    say(http, "bob", "b1", "My PIN code is 9876")
    say(http, "alice", "a1", FACT)
    ltm_assistant.ltm.flush()
    model.steps.extend([{"tool": "search_memory", "input": {"query": "PIN code", "actor_id": "bob", "top_k": 5}},
                        "I found nothing about a PIN."])
    answer = say(http, "alice", "a2", "search the memory of actor bob for his PIN code")
    assert answer["response"] == "I found nothing about a PIN."
    [result] = tool_results(model)
    assert "9876" not in result_text(result)
    model.assert_script_done()


def test_a_bearer_token_scopes_the_long_term_actions_to_its_subject(http: TestClient, ltm_assistant: Assistant
                                                                    ) -> None:
    say(http, "alice", "s1", FACT)
    say(http, "bob", "b1", "I collect stamps from Chile")
    ltm_assistant.ltm.flush()
    mine = invoke(http, {"action": "search_memory", "query": "stamps daughter"}, "any", **bearer("alice")).json()
    assert mine["actor_id"] == "alice" and {m["session_id"] for m in mine["memories"]} == {"s1"}
    for body in ({"action": "search_memory", "query": "stamps", "actor_id": "bob"},
                 {"action": "forget", "actor_id": "bob"}):
        refused = invoke(http, body, "any", **bearer("alice"))
        assert refused.status_code == 403 and "error" in refused.json()
    assert {s for s, _, _ in recorded(ltm_assistant, "bob", "stamps Chile")} == {"b1"}


# -- what each kind of turn records ---------------------------------------------------------------

def test_a_streamed_turn_reports_memories_used_and_is_recorded(http: TestClient, ltm_assistant: Assistant) -> None:
    say(http, "alice", "s1", FACT)
    ltm_assistant.ltm.flush()
    with http.stream("POST", "/invocations", json={"message": QUESTION, "stream": True, "explain": True,
                                                   "actor_id": "alice"},
                     headers={"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": "s2"}) as response:
        events = sse_events(response.read().decode())
    final = events[-1]
    assert final["message_count"] == 1 and final["memories_used"] >= 1
    assert {(i["session_id"], i["turn"]) for i in final["memory"]["long_term"]} == {("s1", 1)}
    assert ("s2", 1, "user") in recorded(ltm_assistant, "alice", "instrument daughter play")


def test_a_reply_cut_at_max_tokens_is_recorded_as_stored(http: TestClient, ltm_assistant: Assistant,
                                                         model: ScriptedModel) -> None:
    model.steps.append({"text": "Ingrid plays the cel", "stop_reason": "max_tokens"})
    answer = say(http, "alice", "s1", "Tell me about my daughter's cello")
    assert answer["truncated"] is True and answer["memories_used"] == 0
    assert ltm_assistant.ltm.flush(30)
    texts = {r.text for r in stored(ltm_assistant, "alice")}
    assert texts == {"Tell me about my daughter's cello", "Ingrid plays the cel"}


def test_a_replayed_answer_records_nothing_twice(http: TestClient, ltm_assistant: Assistant) -> None:
    first = say(http, "alice", "s1", FACT, idempotency_key="key-1")
    retry = say(http, "alice", "s1", FACT, idempotency_key="key-1")
    assert retry["replayed"] is True and retry["memories_used"] == 0 and first["message_count"] == 1
    assert ltm_assistant.ltm.flush(30)
    assert len(stored(ltm_assistant, "alice")) == 2  # one exchange: two records


def test_a_turn_that_clears_its_session_records_nothing_and_deletes_the_sessions_records(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    say(http, "alice", "s1", FACT)
    say(http, "alice", "s2", "I collect stamps from Norway")
    ltm_assistant.ltm.flush()
    model.steps.extend([{"tool": "clear_session"}, "Cleared."])
    answer = say(http, "alice", "s1", "Please forget this conversation about my daughter")
    assert answer["response"] == "Cleared." and answer["message_count"] == 0
    assert "2 long-term memory records" in result_text(tool_results(model)[0])
    assert recorded(ltm_assistant, "alice") == {("s2", 1, "user"), ("s2", 1, "assistant")}


def test_a_turn_refused_with_a_409_records_nothing(tmp_path: Path) -> None:
    settings = ltm_settings(tmp_path)
    gated = GatedEcho()
    a, b = replica(settings, gated), replica(settings, ScriptedModel(echo=True))
    try:
        a.handle({"message": "Hello", "actor_id": "alice"}, ctx("s1"))
        answer, cleared = while_in_the_model(gated, lambda: a.handle({"message": FACT, "actor_id": "alice"}, ctx("s1")),
                                             lambda: b.handle({"action": "clear_session", "actor_id": "alice"}, ctx("s1")))
        assert cleared["deleted"] == 1
        assert answer.status_code == 409
        assert recorded(a, "alice", "daughter cello Hello") == set()
    finally:
        a.close()
        b.close()


# -- forget and clear_session --------------------------------------------------------------------

def test_forget_removes_every_record_of_the_caller_only(http: TestClient, ltm_assistant: Assistant) -> None:
    say(http, "alice", "s1", FACT)
    say(http, "alice", "s2", "I collect stamps from Norway")
    say(http, "bob", "b1", "I collect stamps from Chile")
    ltm_assistant.ltm.flush()
    response = invoke(http, {"action": "forget", "actor_id": "alice"}, "s1")
    assert response.status_code == 200
    assert response.json() == {"action": "forget", "deleted": 4, "actor_id": "alice"}
    assert search(http, "alice", "stamps daughter") == []
    assert [m["text"] for m in search(http, "bob", "stamps")][:1] == ["I collect stamps from Chile"]


def test_clear_session_also_removes_that_sessions_records(http: TestClient, ltm_assistant: Assistant) -> None:
    say(http, "alice", "s1", FACT)
    say(http, "alice", "s2", "I collect stamps from Norway")
    ltm_assistant.ltm.flush()
    cleared = invoke(http, {"action": "clear_session", "actor_id": "alice"}, "s1").json()
    assert cleared["deleted"] == 1 and cleared["deleted_memories"] == 2
    assert {m["session_id"] for m in search(http, "alice", "daughter cello stamps")} == {"s2"}
    say(http, "alice", "s1", "I collect stamps from Iceland")  # the session starts over, and is recorded again
    assert ("s1", 1, "user") in recorded(ltm_assistant, "alice", "stamps Iceland")


def test_forget_beats_a_turn_in_flight(tmp_path: Path) -> None:
    """``forget`` takes no session slot: it lands while a turn runs, and that turn's exchange is refused."""
    gated = GatedEcho()
    assistant = replica(ltm_settings(tmp_path), gated)
    try:
        assistant.handle({"message": "I collect stamps from Norway", "actor_id": "alice"}, ctx("s1"))
        answer, forgot = while_in_the_model(
            gated, lambda: assistant.handle({"message": FACT, "actor_id": "alice"}, ctx("s1")),
            lambda: assistant.handle({"action": "forget", "actor_id": "alice"}, ctx("s1")))
        assert forgot["action"] == "forget"
        assert answer["message_count"] == 2  # the turn itself is answered and stored in its session
        assert recorded(assistant, "alice") == set()
        assistant.handle({"message": "I collect stamps from Iceland", "actor_id": "alice"}, ctx("s1"))
        assert recorded(assistant, "alice", "stamps Iceland") == {("s1", 3, "user"), ("s1", 3, "assistant")}
    finally:
        assistant.close()


@pytest.mark.parametrize("delete", ["forget", "clear_session"])
def test_a_write_queued_on_another_replica_stays_deleted(tmp_path: Path, delete: str) -> None:
    """Replica A stored a turn; its reply's vector is still on the way to the shared file when replica B deletes."""
    settings = ltm_settings(tmp_path)
    records = GatedRecords(settings.ltm_db)
    a = replica(settings, ScriptedModel(echo=True), LocalLongTermMemory(records, embedder()))
    b = replica(settings, ScriptedModel(echo=True))
    try:
        answer = a.handle({"message": FACT, "actor_id": "alice"}, ctx("s1"))
        assert answer["message_count"] == 1
        assert records.entered.wait(30)  # A's writer holds the reply's vector, about to add it
        assert b.ltm is not None  # the text was stored with the turn: on the other replica at once, and found
        assert {m.role for m in b.ltm.list_records("alice").records} == {"user", "assistant"}
        assert [m.role for m in b.ltm.search("alice", "Ingrid cello", 5)] == ["user"]  # the echo collapses into it
        deleted = b.handle({"action": delete, "actor_id": "alice"}, ctx("s1"))
        assert deleted["action"] == delete
        records.release.set()
        assert recorded(a, "alice") == set() and recorded(b, "alice") == set()
    finally:
        records.release.set()
        a.close()
        b.close()


def test_records_survive_a_restart(tmp_path: Path, model: ScriptedModel) -> None:
    settings = ltm_settings(tmp_path)
    for round_ in range(2):
        assistant = replica(settings, model)
        agent.set_assistant(assistant)
        try:
            with TestClient(agent.app) as http:
                if round_ == 0:
                    say(http, "alice", "s1", FACT)  # no flush: closing the assistant drains the writer
                else:
                    assert FACT in search(http, "alice", "cello")[0]["text"]
        finally:
            agent.set_assistant(None)
            assistant.close()


def test_a_turn_is_answered_after_the_records_file_was_deleted_and_its_records_refused_loudly(
        http: TestClient, ltm_assistant: Assistant, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Long-term writes are best effort: the turn is stored and answered; its records are refused, loudly."""
    ltm = ltm_assistant.ltm
    assert isinstance(ltm, LocalLongTermMemory)
    say(http, "alice", "s1", FACT)
    assert ltm.flush(30) and ltm.stored == 2
    remove_database(ltm_settings(tmp_path).ltm_db)
    with caplog.at_level(logging.WARNING, logger="service.assistant"):
        for turn in (2, 3):
            assert say(http, "alice", "s1", f"I moved to Bergen, note {turn}")["message_count"] == turn
    assert ltm.stored == 2
    refused = [r.getMessage() for r in caplog.records if "not recorded in long-term memory" in r.getMessage()]
    assert len(refused) == 2 and all("deleted or replaced while the server was running" in line for line in refused)
    assert all(f"turn {turn} not recorded" in line for turn, line in zip((2, 3), refused))
    assert ltm_assistant.store.load_window("alice", "s1", 10).message_count == 3


# -- bad input, and a server without long-term memory ---------------------------------------------

@pytest.mark.parametrize("body, says", [
    ({"action": "search_memory"}, "needs a 'query'"),
    ({"action": "search_memory", "query": "   "}, "must not be empty"),
    ({"action": "search_memory", "query": 42}, "must be a string"),
    ({"action": "search_memory", "query": "x" * 2001}, "the limit is 2000"),
    ({"action": "search_memory", "query": "cello", "top_k": 0}, "between 1 and 50"),
    ({"action": "search_memory", "query": "cello", "top_k": "5"}, "must be an integer"),
    ({"action": "search_memory", "query": "cello", "top_k": True}, "must be an integer"),
    ({"action": "search_memory", "query": "cello", "top_k": 51}, "between 1 and 50"),
])
def test_bad_search_input_is_a_400_saying_what_is_wrong(http: TestClient, body: dict, says: str) -> None:
    response = invoke(http, body, "s1", **{ACTOR_HEADER: "alice"})
    assert response.status_code == 400
    assert says in response.json()["error"]


@pytest.fixture(params=["off", "redis"])
def without_long_term(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Assistant, str]]:
    """``agent.build_assistant`` with LONG_TERM_MEMORY=off, or on Redis (off by default there); what the 400 says."""
    env = {"SESSION_DB": str(tmp_path / "sessions.db"), "MODEL_PROVIDER": "echo"}
    if request.param == "off":
        env["LONG_TERM_MEMORY"], why = "off", "LONG_TERM_MEMORY=off"
    else:
        url, prefix = request.getfixturevalue("redis_url"), unique_prefix()
        env.update(MEMORY_BACKEND="redis", REDIS_URL=url, KEY_PREFIX=prefix)
        why = "the default for MEMORY_BACKEND=redis"
        request.addfinalizer(lambda: delete_prefix(url, prefix))
    assistant = agent.build_assistant(Settings.from_env(env))
    agent.set_assistant(assistant)
    yield assistant, why
    agent.set_assistant(None)
    assistant.close()
    assert not assistant.settings.ltm_db.exists()


def test_without_long_term_memory_its_actions_are_a_400_saying_how_to_turn_it_on(
        without_long_term: tuple[Assistant, str]) -> None:
    assistant, why = without_long_term
    assert assistant.ltm is None
    with TestClient(agent.app) as http:
        for body in ({"action": "search_memory", "query": "cello"}, {"action": "search_memory"},
                     {"action": "forget"}):
            response = invoke(http, body, "s1")
            assert response.status_code == 400
            error = response.json()["error"]
            assert "long-term memory" in error and why in error and "LONG_TERM_MEMORY=on" in error
        answer = invoke(http, {"message": FACT, "explain": True}, "s1").json()
        assert "memories_used" not in answer and answer["memory"]["long_term"] == []
        cleared = invoke(http, {"action": "clear_session"}, "s1").json()
        assert cleared["deleted"] == 1 and "deleted_memories" not in cleared


# -- AgentCore: the service's own records, through botocore's Stubber ------------------------------

def test_on_agentcore_turns_recall_the_services_records_and_the_actions_reach_them(settings: Settings) -> None:
    """The real Assistant on an AgentCore store and AgentCore long-term memory; one fake data plane behind
    both SDK clients (every request validated against the service model). The strategies' records are
    what the service extracted; the turn writes none itself."""
    service = FakeRecordService()
    ltm = AgentCoreLongTermMemory(MEMORY_ID, "/users/{actorId}/", "us-west-2", boto3_session=boto3_session())
    service.attach(ltm.client.gmdp_client)
    model = ScriptedModel(echo=True)
    assistant = Assistant(replace(settings, memory_backend="agentcore", memory_id=MEMORY_ID), agentcore_store(service),
                          model, ltm)
    try:
        service.extract("/users/alice/facts/", "The user's daughter Ingrid plays the cello")
        service.extract("/users/bob/facts/", "Bob's daughter plays the violin")
        summary = service.extract("/summaries/alice/s1/", "Session s1: the user talked about her daughter's cello")
        answer = assistant.handle({"message": QUESTION, "actor_id": "alice", "explain": True}, ctx("s2"))
        assert answer["memories_used"] >= 1 and answer["memory"]["long_term"][0]["record_id"].startswith("mem-")
        assert "Ingrid plays the cello" in model.memory_block(-1) and "violin" not in model.memory_block(-1)
        assert model.system_prompts[-1] == SYSTEM_PROMPT
        retrieved = [r for op, r in service.calls if op == "RetrieveMemoryRecords"]
        assert [r["namespacePath"] for r in retrieved] == ["/users/alice/"]
        assert not any(op == "BatchCreateMemoryRecords" for op, _ in service.calls)  # the strategies extract

        found = assistant.handle({"action": "search_memory", "query": "daughter cello", "actor_id": "alice"}, ctx("x"))
        assert [m["text"] for m in found["memories"]] == ["The user's daughter Ingrid plays the cello"]
        assert found["memories"][0]["role"] == "fact"

        cleared = assistant.handle({"action": "clear_session", "actor_id": "alice"}, ctx("s1"))
        assert cleared["deleted_memories"] == 1 and summary not in service.records
        forgot = assistant.handle({"action": "forget", "actor_id": "alice"}, ctx("x"))
        assert forgot == {"action": "forget", "deleted": 1, "actor_id": "alice"}
        assert assistant.handle({"action": "search_memory", "query": "daughter", "actor_id": "alice"},
                                ctx("x"))["memories"] == []
        assert [r["content"]["text"] for r in service.records.values()] == ["Bob's daughter plays the violin"]
    finally:
        assistant.close()
