"""Logs: one line per request (ids, backend, status, latency, phase timings), errors logged once,
never message text at INFO; ``LOG_FORMAT=json`` on the real server gives one JSON object per line."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from strands.types.exceptions import ModelThrottledException

from core.settings import Settings
from memory.base import SessionStore
from service import Assistant
from service.logs import RateLimitRepeats
from tests.conftest import ACTOR_HEADER, REQUEST_PATH_BACKENDS, SESSION_HEADER, STORE_FACTORIES, store_factory_over
from tests.helpers.http_load import LogDrain
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.server import ROOT, InProcessServer, Server, free_port
from tests.test_identity import bearer

#: the request path alone: the same code whatever the store (the contract suite covers every backend);
#: what a store module logs is checked on every backend (no message text at INFO)
store_factory = store_factory_over(REQUEST_PATH_BACKENDS)

SECRET = "the launch code is 0000-SWORDFISH"


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "service.logs" and r.getMessage().startswith("request_id=<")]


def post(client: TestClient, body: object, session: str = "conv", **headers: str):
    if isinstance(body, bytes):
        return client.post("/invocations", content=body, headers={SESSION_HEADER: session, **headers})
    return client.post("/invocations", json=body, headers={SESSION_HEADER: session, **headers})


def test_every_request_is_logged_exactly_once_with_its_ids_outcome_and_timings(
    client: TestClient, assistant: Assistant, model: ScriptedModel, caplog: pytest.LogCaptureFixture
) -> None:
    requests = [  # (body, headers, status)
        ({"message": "hello"}, {ACTOR_HEADER: "alice"}, 200),
        ({"message": ""}, {}, 400),
        ({"action": "summarize_session"}, {ACTOR_HEADER: "alice"}, 200),
        ({"message": "hi", "actor_id": "bob"}, bearer("mallory"), 403),
        ({"message": "this one fails"}, {ACTOR_HEADER: "alice"}, 502),
        ({"action": "clear_session"}, {ACTOR_HEADER: "alice"}, 200),
    ]
    with caplog.at_level(logging.DEBUG):
        for body, headers, status in requests:
            if status == 502:
                model.steps.append(RuntimeError("model down"))
            assert post(client, body, **headers).status_code == status
        assert post(client, b"{not json").status_code == 400  # refused by the runtime: its own one line

    lines = request_lines(caplog)
    assert [r.fields["status"] for r in lines] == [status for _, _, status in requests]
    assert len({r.fields["request_id"] for r in lines}) == len(requests) and all(r.fields["request_id"] for r in lines)
    assert [r.levelname for r in lines] == ["INFO", "WARNING", "INFO", "WARNING", "ERROR", "INFO"]
    for record in lines:
        message = record.getMessage()
        assert f"backend=<{assistant.store.name}>" in message and "session_id=<conv>" in message
        assert record.fields["latency_ms"] >= 0
    chat, bad, summary, forbidden, failed, cleared = lines
    assert "actor_id=<alice>" in chat.getMessage() and "message_count=1 history_length=0" in chat.getMessage()
    assert set(chat.fields["phases_ms"]) == {"store_read", "model", "store_write"}
    assert set(failed.fields["phases_ms"]) == {"store_read", "model"}  # failed in the model, nothing written
    assert failed.fields["error"] == "model call failed: RuntimeError: model down"
    assert bad.fields["error"] == "'message' must not be empty"
    assert (summary.fields["action"], cleared.fields["action"], cleared.fields["deleted"]) == (
        "summarize_session", "clear_session", 1)
    assert "actor does not match" in forbidden.fields["error"]

    runtime = [r for r in caplog.records if r.name == "bedrock_agentcore.app"]
    assert [r.getMessage().split(" (")[0] for r in runtime] == ["Invalid JSON in request"]  # no duplicate lines


@pytest.mark.parametrize("steps", [
    [RuntimeError("model down")],
    [{"tool": "summarize_session"}, RuntimeError("down after a tool call")],  # (an empty session: no summary call)
    [ModelThrottledException("slow down")],
], ids=["model error", "after a tool call", "throttled"])
def test_an_error_is_logged_once_at_the_boundary(client: TestClient, model: ScriptedModel,
                                                 caplog: pytest.LogCaptureFixture, steps: list) -> None:
    """Neither our code nor the libraries log the same failure twice (Strands' "event loop cycle
    failed" and the runtime's "Invocation returned HTTP 5xx" are dropped: our line says it all)."""
    model.steps.extend(steps)
    with caplog.at_level(logging.DEBUG):
        response = post(client, {"message": "hello"})
    assert response.status_code in (502, 503)
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) == 1, [f"{r.name}: {r.getMessage()}" for r in problems]
    assert problems[0].name == "service.logs" and problems[0].fields["status"] == response.status_code


def test_a_bug_is_a_json_500_with_the_request_id_and_one_logged_traceback(
    client: TestClient, assistant: Assistant, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> int:
        raise KeyError("a bug in a store")

    monkeypatch.setattr(assistant.store, "delete_session", broken)
    with caplog.at_level(logging.INFO):
        response = post(client, {"action": "clear_session"})
    assert response.status_code == 500
    [line] = request_lines(caplog)
    error = response.json()["error"]
    assert error == f"internal error (request id {line.fields['request_id']}); the server log has the details"
    assert "KeyError" not in error
    assert line.levelname == "ERROR" and line.exc_info is not None and "KeyError: 'a bug in a store'" in line.getMessage()
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert post(client, {"message": "next"}).status_code == 200


@pytest.mark.parametrize("store_factory", list(STORE_FACTORIES), indirect=True)
def test_no_message_text_is_logged_at_info_or_above(client: TestClient, model: ScriptedModel,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Through every path that handles the text: a chat turn, the summarize tool, the summary and
    clear actions, a failed model call, and (on agentcore) the AgentCore SDK, which logs at INFO."""
    with caplog.at_level(logging.DEBUG):
        assert SECRET in post(client, {"message": SECRET}).json()["response"]
        model.steps.extend([{"tool": "summarize_session"}, f"summary: {SECRET}", f"recap: {SECRET}"])
        assert post(client, {"message": f"summarise, {SECRET}"}).status_code == 200
        assert SECRET in post(client, {"action": "summarize_session"}).json()["summary"]
        model.steps.append(RuntimeError("model down"))
        assert post(client, {"message": SECRET}).status_code == 502
        assert post(client, {"action": "clear_session"}).status_code == 200
    leaks = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in caplog.records
             if r.levelno >= logging.INFO and SECRET.split()[-1] in r.getMessage()]
    assert leaks == []
    assert len(request_lines(caplog)) == 5


def test_log_format_json_on_the_real_server(tmp_path: Path) -> None:
    server = Server({"SESSION_DB": str(tmp_path / "s.db"), "LOG_FORMAT": "json"}).start()
    log = LogDrain(server)
    try:
        assert server.invoke({"message": SECRET}, "conv1", headers={ACTOR_HEADER: "alice"})[0] == 200
        assert server.invoke({"message": "hi"}, "bad:id")[0] == 400
        assert server.invoke(b"{not json", "conv1")[0] == 400
    finally:
        server.stop()
    lines = log.wait_closed()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    ok, bad = [e for e in entries if e["logger"] == "service.logs" and "status" in e]
    assert {k: ok[k] for k in ("actor_id", "session_id", "backend", "status", "history_length")} == {
        "actor_id": "alice", "session_id": "conv1", "backend": "sqlite", "status": 200, "history_length": 0}
    assert ok["request_id"] and ok["latency_ms"] >= 0
    assert set(ok["phases_ms"]) == {"store_read", "longterm_search", "model", "store_write"}  # long-term memory: on
    assert (bad["level"], bad["status"], bad["session_id"]) == ("WARNING", 400, "bad:id")
    assert "session id may contain only" in bad["error"]
    [refused] = [e for e in entries if e["logger"] == "bedrock_agentcore.app"]
    assert refused["message"].startswith("Invalid JSON in request") and refused["request_id"]
    assert not [line for line in lines if "SWORDFISH" in line]


def test_served_by_uvicorn_agent_app_each_request_is_logged_too(tmp_path: Path) -> None:
    """``uvicorn agent:app`` (what ``agentcore dev`` runs) skips ``main()``: the app sets logging up itself."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "agent:app", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
        env={**os.environ, "MODEL_PROVIDER": "echo", "SESSION_DB": str(tmp_path / "s.db")},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        server = Server({}, port=port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status, body = server.invoke({"message": SECRET}, "conv1")
                break
            except OSError:
                time.sleep(0.05)
        assert (status, body["message_count"]) == (200, 1)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    log = stderr.decode()
    [line] = [line for line in log.splitlines() if " INFO service.logs: request_id=<" in line]
    assert "session_id=<conv1>" in line and "status=<200>" in line
    assert "SWORDFISH" not in log


# -- one INFO line per request, whatever the kind ---------------------------------------------------

def server_side_info(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """INFO records of the server side (the test's HTTP client, httpx, logs its own)."""
    return [r for r in caplog.records if r.levelno == logging.INFO and not r.name.startswith("httpx")]


def test_plain_streamed_truncated_and_action_requests_log_exactly_one_info_line_each(
        client: TestClient, model: ScriptedModel, caplog: pytest.LogCaptureFixture) -> None:
    """Strands' "handling max_tokens stop reason - replacing all tool uses" (no tool was used) and
    "Creating Strands MetricsClient", the runtime's "Returning streaming response": dropped; our line stays."""
    model.steps.extend(["plain", {"text": "cut", "stop_reason": "max_tokens"}, "streamed",
                        {"text": "cut too", "stop_reason": "max_tokens"}, "a summary"])
    with caplog.at_level(logging.DEBUG):
        assert post(client, {"message": "one"}).status_code == 200
        assert post(client, {"message": "two"}).json()["truncated"] is True
        for body in ({"message": "three", "stream": True}, {"message": "four", "stream": True}):
            with client.stream("POST", "/invocations", json=body, headers={SESSION_HEADER: "conv"}) as response:
                assert response.status_code == 200 and response.read()
        assert post(client, {"action": "summarize_session"}).status_code == 200
        assert post(client, {"action": "clear_session"}).status_code == 200
    info = server_side_info(caplog)
    assert [r.name for r in info] == ["service.logs"] * 6, [f"{r.name}: {r.getMessage()}" for r in info]
    plain, truncated, streamed, streamed_cut, summary, cleared = (r.fields for r in info)
    assert truncated["truncated"] is True and streamed_cut["truncated"] is True and "truncated" not in plain
    assert streamed["stream"] is True and streamed["message_count"] == 3 and streamed_cut["message_count"] == 4
    assert (summary["action"], cleared["action"]) == ("summarize_session", "clear_session")


def test_the_running_server_logs_one_info_line_per_request_after_start_up(tmp_path: Path) -> None:
    server = Server({"SESSION_DB": str(tmp_path / "s.db")}, log_path=tmp_path / "log").start()
    try:
        assert server.invoke({"message": "hello"}, "conv")[0] == 200
        request = urllib.request.Request(f"{server.url}/invocations", data=b'{"message": "hi", "stream": true}',
                                         headers={SESSION_HEADER: "conv"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.read().count(b"data: ") > 1
        assert server.invoke({"action": "summarize_session"}, "conv")[0] == 200
        assert server.invoke({"message": "again"}, "conv")[0] == 200
    finally:
        server.stop()
    lines = server.log().splitlines()
    started = next(i for i, line in enumerate(lines) if "serving on http://" in line)
    # after the requests, the shutdown's one line says what long-term memory left for the next start
    info = [line for line in lines[started + 1:] if " INFO " in line and "long-term memory: closed in" not in line]
    assert len(info) == 4 and all(" INFO service.logs: request_id=<" in line for line in info), info


def test_refused_requests_have_their_one_line_too(client: TestClient, assistant: Assistant,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert post(client, b'{"message": "' + b"x" * assistant.settings.body_limit + b'"}').status_code == 413
        assert post(client, b"[" * 100 + b"]" * 100).status_code == 400
    too_long, too_deep = request_lines(caplog)
    assert (too_long.fields["status"], too_long.fields["session_id"]) == (413, "conv")
    assert "MAX_BODY_BYTES" in too_long.fields["error"] and too_deep.fields["status"] == 400


def test_a_stream_abandoned_before_its_first_event_leaves_one_request_line(
        settings: Settings, store: SessionStore, caplog: pytest.LogCaptureFixture) -> None:
    from tests.test_session_queue import GatedModel

    model = GatedModel()
    assistant = Assistant(replace(settings, memory_backend=store.name), store, model)
    with caplog.at_level(logging.INFO), InProcessServer(assistant) as server:
        body = json.dumps({"message": "busy: stream then hang up", "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"{SESSION_HEADER}: gone\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            assert model.entered.wait(30)  # the turn is in the model; not one event sent yet
        deadline = time.monotonic() + 20
        while "client disconnected mid-stream" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        model.gate.set()
        while not request_lines(caplog) and time.monotonic() < deadline:
            time.sleep(0.02)
    [line] = request_lines(caplog)
    assert line.fields["session_id"] == "gone" and line.fields["stream"] is True
    assert "client gone mid-stream; turn not stored" in line.getMessage()
    assert store.list_events("default_user", "gone") == []
    assistant.close()


def test_a_repeated_warning_is_logged_once_per_window_with_a_count_of_the_rest() -> None:
    now = [0.0]
    limiter = RateLimitRepeats(window=10, clock=lambda: now[0])

    def record(message: str, level: int = logging.ERROR, **extra: object) -> logging.LogRecord:
        entry = logging.LogRecord("asyncio", level, __file__, 1, message, None, None)
        entry.__dict__.update(extra)
        return entry

    flood = "socket.accept() out of system resource\nsocket: <fd=6>"
    assert [limiter.filter(record(flood)) for _ in range(1000)].count(True) == 1
    assert limiter.filter(record("another problem"))
    assert all(limiter.filter(record("request_id=<%s> | ...", logging.WARNING, fields={})) for _ in range(50))
    assert all(limiter.filter(record(flood, logging.INFO)) for _ in range(5))  # INFO is never held back
    now[0] = 11.0
    again = record(flood)
    assert limiter.filter(again) and "[999 more like this in the last 11 s not logged]" in again.getMessage()
