"""The dev UI's server side (#15): ``list_sessions`` and ``get_history`` actions, the ``explain`` memory report.

Each runs on every backend, through the handler (``chat_handler``) and over HTTP (the app,
through Starlette's TestClient): same bodies either way.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import jwt
import pytest
from bedrock_agentcore.runtime.context import RequestContext
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

import agent
from agent import chat_handler
from memory.base import SessionStore
from service import Assistant, parse_request
from tests.conftest import ACTOR_HEADER, SESSION_HEADER
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.session_helpers import FactKeepingModel

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
Call = Callable[..., tuple[int, Any]]


def bearer(sub: str) -> dict[str, str]:
    token = jwt.encode({"sub": sub}, "a-signing-key-the-runtime-checked-not-us-32b", algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["handler", "http"])
def call(request: pytest.FixtureRequest, assistant: Assistant) -> Call:
    """``call(body, session=None, **headers) -> (status, JSON body)`` through the handler or over HTTP."""
    if request.param == "handler":
        def through_handler(body: dict[str, Any], session: str | None = None, **headers: str) -> tuple[int, Any]:
            response = chat_handler(body, RequestContext(session_id=session, request_headers=headers or None))
            if isinstance(response, JSONResponse):
                return response.status_code, json.loads(response.body)
            return 200, response

        return through_handler
    client = request.getfixturevalue("client")

    def over_http(body: dict[str, Any], session: str | None = None, **headers: str) -> tuple[int, Any]:
        if session is not None:
            headers[SESSION_HEADER] = session
        # json.dumps escapes what httpx's own JSON encoding cannot send (a lone surrogate)
        response = client.post("/invocations", content=json.dumps(body),
                               headers={"Content-Type": "application/json", **headers})
        return response.status_code, response.json()

    return over_http


def chat(call: Call, message: str, session: str, **headers: str) -> dict[str, Any]:
    """One turn; its rolling-summary fold (run after the reply, in the background) has ended when it returns."""
    status, body = call({"message": message}, session, **headers)
    assert status == 200, body
    assert agent.get_assistant().folds.join(10)
    return body


def ok(call: Call, body: dict[str, Any], session: str | None = None, **headers: str) -> dict[str, Any]:
    status, answer = call(body, session, **headers)
    assert status == 200, answer
    return answer


# -- list_sessions -----------------------------------------------------------------------------------

def test_list_sessions_pages_the_callers_sessions_newest_first(call: Call) -> None:
    for n in range(5):
        chat(call, f"first words of talk {n}", f"talk-{n}")
    chat(call, "a later message", "talk-1")  # talk-1 is now the newest
    chat(call, "not yours", "talk-9", **{ACTOR_HEADER: "bob"})
    chat(call, "soon gone", "cleared")
    assert ok(call, {"action": "clear_session"}, "cleared")["deleted"] == 1

    pages = []
    cursor = None
    while True:
        page = ok(call, {"action": "list_sessions", "limit": 2, "cursor": cursor})
        assert set(page) == {"action", "actor_id", "sessions", "next_cursor"}
        assert (page["action"], page["actor_id"]) == ("list_sessions", "default_user")
        pages.append(page["sessions"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    sessions = [s for p in pages for s in p]
    assert [s["session_id"] for s in sessions] == ["talk-1", "talk-4", "talk-3", "talk-2", "talk-0"]
    assert sessions[0] == {"session_id": "talk-1", "message_count": 2, "last_activity": sessions[0]["last_activity"],
                           "first_message": "first words of talk 1"}
    assert all(set(s) == {"session_id", "message_count", "last_activity", "first_message"} for s in sessions)
    assert all(ISO_UTC.fullmatch(s["last_activity"]) for s in sessions)
    newest = datetime.strptime(sessions[0]["last_activity"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - newest).total_seconds()) < 300
    assert [s["last_activity"] for s in sessions] == sorted((s["last_activity"] for s in sessions), reverse=True)

    theirs = ok(call, {"action": "list_sessions"}, **{ACTOR_HEADER: "bob"})
    assert [s["session_id"] for s in theirs["sessions"]] == ["talk-9"] and theirs["actor_id"] == "bob"
    assert ok(call, {"action": "list_sessions"}, **{ACTOR_HEADER: "carol"})["sessions"] == []


def test_list_sessions_ignores_the_session_and_clips_the_first_message(call: Call) -> None:
    chat(call, "Where should we go in May? " + "x" * 300, "trip")
    for session in (None, "trip", "another"):
        [only] = ok(call, {"action": "list_sessions"}, session)["sessions"]
        assert only["session_id"] == "trip" and only["first_message"] == ("Where should we go in May? " + "x" * 300)[:120]


def test_list_sessions_with_a_token_lists_only_the_token_subjects_sessions(call: Call) -> None:
    chat(call, "alice's", "a1", **bearer("alice"))
    chat(call, "bob's", "b1", **bearer("bob"))
    listed = ok(call, {"action": "list_sessions"}, **bearer("alice"))
    assert listed["actor_id"] == "alice" and [s["session_id"] for s in listed["sessions"]] == ["a1"]
    status, body = call({"action": "list_sessions", "actor_id": "bob"}, None, **bearer("alice"))
    assert status == 403 and "sub" in body["error"]
    assert ok(call, {"action": "list_sessions"}, **bearer("alice"), **{ACTOR_HEADER: "alice"})["sessions"]


# -- get_history -------------------------------------------------------------------------------------

def test_get_history_pages_the_sessions_turns_newest_page_first(call: Call) -> None:
    for n in range(1, 8):
        chat(call, f"question {n}", "s1")
    chat(call, "elsewhere", "s2")
    first = ok(call, {"action": "get_history", "limit": 3}, "s1")
    assert set(first) == {"action", "session_id", "actor_id", "message_count", "turns", "next_before", "summary"}
    assert (first["action"], first["session_id"], first["actor_id"]) == ("get_history", "s1", "default_user")
    assert first["message_count"] == 7 and first["summary"] is None
    assert [(t["turn"], t["user"], t["assistant"]) for t in first["turns"]] == [
        (n, f"question {n}", f"You said 'question {n}'") for n in (5, 6, 7)]
    assert all(set(t) == {"turn", "user", "assistant", "created_at"} and ISO_UTC.fullmatch(t["created_at"])
               for t in first["turns"])
    second = ok(call, {"action": "get_history", "limit": 3, "before": first["next_before"]}, "s1")
    assert [t["turn"] for t in second["turns"]] == [2, 3, 4] and second["message_count"] == 7
    last = ok(call, {"action": "get_history", "limit": 3, "before": second["next_before"]}, "s1")
    assert [t["turn"] for t in last["turns"]] == [1] and last["next_before"] is None
    whole = ok(call, {"action": "get_history"}, "s1")  # limit 50 by default
    assert [t["turn"] for t in whole["turns"]] == list(range(1, 8)) and whole["next_before"] is None


def test_get_history_shows_the_rolling_summary_and_is_empty_after_a_clear(call: Call, assistant: Assistant) -> None:
    assistant.settings = replace(assistant.settings, memory_k=2, summary_batch=1)
    for n in range(1, 5):
        chat(call, f"note {n}", "s1")
    history = ok(call, {"action": "get_history", "limit": 1}, "s1")
    assert [t["turn"] for t in history["turns"]] == [4] and history["next_before"] == 4
    summary = history["summary"]
    # folded one turn early (for the request after next, whose window is turns 4-5): through turn 3
    assert set(summary) == {"text", "through_turn"} and summary["through_turn"] == 3
    assert summary["text"] == assistant.store.get_summary("default_user", "s1").text  # type: ignore[union-attr]
    ok(call, {"action": "clear_session"}, "s1")
    assert ok(call, {"action": "get_history"}, "s1") == {
        "action": "get_history", "session_id": "s1", "actor_id": "default_user", "message_count": 0,
        "turns": [], "next_before": None, "summary": None}


def test_get_history_with_a_token_reads_only_the_token_subjects_session(call: Call) -> None:
    chat(call, "bob's secret", "shared-id", **bearer("bob"))
    mine = ok(call, {"action": "get_history"}, "shared-id", **bearer("alice"))
    assert mine["actor_id"] == "alice" and mine["turns"] == [] and mine["message_count"] == 0
    status, body = call({"action": "get_history", "actor_id": "bob"}, "shared-id", **bearer("alice"))
    assert status == 403
    assert [t["user"] for t in ok(call, {"action": "get_history"}, "shared-id", **bearer("bob"))["turns"]] == [
        "bob's secret"]


# -- bad input ---------------------------------------------------------------------------------------

def forged_cursor(raw_json: str) -> str:
    """A cursor shaped like ours (base64 of JSON) around whatever a client chose to put in it."""
    return base64.urlsafe_b64encode(raw_json.encode()).decode().rstrip("=")


@pytest.mark.parametrize(("body", "field"), [
    ({"action": "list_sessions", "limit": 0}, "'limit'"),
    ({"action": "list_sessions", "limit": -3}, "'limit'"),
    ({"action": "list_sessions", "limit": 101}, "'limit'"),
    ({"action": "list_sessions", "limit": 10**400}, "'limit'"),
    ({"action": "list_sessions", "limit": "20"}, "'limit'"),
    ({"action": "list_sessions", "limit": 2.5}, "'limit'"),
    ({"action": "list_sessions", "limit": True}, "'limit'"),
    ({"action": "list_sessions", "cursor": 7}, "'cursor'"),
    ({"action": "list_sessions", "cursor": {"at": 1}}, "'cursor'"),
    ({"action": "list_sessions", "cursor": "not-a-cursor"}, "cursor"),
    ({"action": "list_sessions", "cursor": ""}, "cursor"),
    ({"action": "list_sessions", "cursor": "WzIsIDEuNSwgInMiXQ=="}, "cursor"),  # [2, 1.5, "s"]: not ours
    ({"action": "list_sessions", "cursor": forged_cursor('[1,' + "9" * 400 + ',"s1"]')}, "'cursor'"),
    ({"action": "list_sessions", "cursor": forged_cursor('[1,' + "[" * 2000 + "]" * 2000 + ',"s1"]')}, "'cursor'"),
    ({"action": "list_sessions", "cursor": forged_cursor('[1,' + "[" * 1400 + ',"s1"]')}, "'cursor'"),
    ({"action": "list_sessions", "cursor": forged_cursor('[1,1.5,"\\ud800"]')}, "'cursor'"),
    ({"action": "list_sessions", "cursor": "\ud800"}, "'cursor'"),
    ({"action": "get_history", "limit": 0}, "'limit'"),
    ({"action": "get_history", "limit": 201}, "'limit'"),
    ({"action": "get_history", "limit": None, "before": 0}, "'before'"),
    ({"action": "get_history", "before": -1}, "'before'"),
    ({"action": "get_history", "before": "5"}, "'before'"),
    ({"action": "get_history", "before": 2.0}, "'before'"),
    ({"action": "get_history", "before": False}, "'before'"),
    ({"action": "get_history", "before": 2**64}, "'before'"),
    ({"message": "hi", "explain": "yes"}, "'explain'"),
    ({"message": "hi", "explain": 1}, "'explain'"),
])
def test_bad_paging_or_explain_is_a_400_naming_the_field_and_changes_nothing(
        call: Call, model: ScriptedModel, store: SessionStore, body: dict[str, Any], field: str) -> None:
    chat(call, "kept", "s1")
    calls = len(model.calls)
    status, answer = call(body, "s1")
    assert status == 400 and set(answer) == {"error"}
    assert field in answer["error"]
    assert len(model.calls) == calls
    assert [t for t in store.get_history("default_user", "s1", 10).turns] and len(
        store.list_events("default_user", "s1")) == 1


def test_the_largest_limits_and_before_are_taken(call: Call) -> None:
    chat(call, "one", "s1")
    assert len(ok(call, {"action": "list_sessions", "limit": 100, "cursor": None})["sessions"]) == 1
    history = ok(call, {"action": "get_history", "limit": 200, "before": 2**53 - 1}, "s1")
    assert [t["turn"] for t in history["turns"]] == [1] and history["message_count"] == 1


def test_list_sessions_does_not_wait_for_a_running_turn(assistant: Assistant) -> None:
    """It takes no session slot: a turn of the very session named in its header does not hold it up."""
    started, release = threading.Event(), threading.Event()

    class SlowModel(ScriptedModel):
        async def stream(self, *args: Any, **kwargs: Any) -> Any:
            import asyncio

            started.set()
            await asyncio.to_thread(release.wait, 30)
            async for event in super().stream(*args, **kwargs):
                yield event

    slow = Assistant(assistant.settings, assistant.store, SlowModel(echo=True))
    turn = threading.Thread(target=lambda: slow.chat(parse_request({"message": "slow"}, "busy", None, slow.settings)))
    turn.start()
    try:
        assert started.wait(30)
        listed: dict[str, Any] = {}
        lister = threading.Thread(target=lambda: listed.update(
            slow.run_action(parse_request({"action": "list_sessions"}, "busy", None, slow.settings))))
        lister.start()
        lister.join(30)
        assert not lister.is_alive() and listed["sessions"] == []  # answered while the turn still runs
    finally:
        release.set()
        turn.join(30)
        slow.turns.shutdown()


# -- explain -----------------------------------------------------------------------------------------

def test_explain_reports_the_turns_and_the_summary_put_in_front_of_the_model(
        call: Call, assistant: Assistant) -> None:
    assistant.settings = replace(assistant.settings, memory_k=3, summary_batch=1)
    for n in range(1, 6):
        assert "memory" not in chat(call, f"my fact{n} is v{n}", "s1")
    first = ok(call, {"message": "how are you", "explain": True}, "s2")
    assert first["memory"] == {"window": {"turns": []}, "summary": None, "long_term": []}
    answer = ok(call, {"message": "what do you know?", "explain": True}, "s1")
    assert answer["message_count"] == 6 and answer["history_length"] == 3
    # turns 3-5 in the window; the summary, folded one turn early (after the replies), reaches turn 3
    assert answer["memory"] == {"window": {"turns": [3, 4, 5]}, "summary": {"through_turn": 3}, "long_term": []}
    assert "memory" not in ok(call, {"message": "and now?", "explain": False}, "s1")


def test_explain_counts_only_the_turns_the_model_was_given(call: Call, store: SessionStore) -> None:
    from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

    store.add_turns("default_user", "odd", [ConversationalMessage("q1", MessageRole.USER),
                                            ConversationalMessage("a1", MessageRole.ASSISTANT)])
    store.add_turns("default_user", "odd", [ConversationalMessage("unanswered", MessageRole.USER)])
    answer = ok(call, {"message": "next", "explain": True}, "odd")
    assert answer["history_length"] == 1 and answer["memory"]["window"]["turns"] == [1]


def test_explain_on_a_stream_is_in_the_final_event(client: TestClient, assistant: Assistant) -> None:
    import json

    for n in range(1, 3):
        client.post("/invocations", json={"message": f"hello {n}"}, headers={SESSION_HEADER: "s1"})
    with client.stream("POST", "/invocations", json={"message": "again", "stream": True, "explain": True},
                       headers={SESSION_HEADER: "s1"}) as response:
        events = [json.loads(line[6:]) for line in response.read().decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == {"session_id": "s1", "actor_id": "default_user", "message_count": 3, "history_length": 2,
                          "memory": {"window": {"turns": [1, 2]}, "summary": None, "long_term": []}}


def test_explain_on_a_replayed_answer_reports_that_nothing_was_loaded(call: Call) -> None:
    chat(call, "earlier", "s1")
    body = {"message": "keyed", "idempotency_key": "k1", "explain": True}
    first = ok(call, body, "s1")
    assert first["memory"]["window"]["turns"] == [1]
    replayed = ok(call, body, "s1")
    assert replayed["replayed"] is True
    assert replayed["memory"] == {"window": {"turns": []}, "summary": None, "long_term": []}


def test_a_fact_keeping_summary_reaches_the_report_at_turn_12(assistant: Assistant, call: Call) -> None:
    """Default MEMORY_K (10): past it, the report names the window 2-11 and the summary through turn 1+."""
    assistant.model = FactKeepingModel()
    assistant.summarizer.model = assistant.model
    for n in range(1, 12):
        chat(call, f"my fact{n} is v{n}", "long")
    answer = ok(call, {"message": "recap", "explain": True}, "long")
    assert answer["memory"]["window"]["turns"] == list(range(2, 12))
    assert answer["memory"]["summary"]["through_turn"] >= 1
