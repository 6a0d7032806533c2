"""Traces of every turn: the span tree, session.id on each span, what memory did, and no message text.

The SDK's in-memory exporter runs in a subprocess (``tests/helpers/span_tree.py``: a tracer provider
is set once per process, and this one keeps the no-op default); the same spans are then received
as a collector gets them, protobuf over OTLP/HTTP, from the real server started with
``OTEL_EXPORTER_OTLP_ENDPOINT``. A dead or stalled collector neither slows nor fails a turn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from opentelemetry import trace

from core.telemetry import configure_telemetry, memory_span, turn_span
from tests.helpers.otlp_receiver import OTLPReceiver
from tests.helpers.server import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "Biscuit-the-tabby-7731"


def run_turns(tmp_path: Path, turns: list[tuple[str, dict[str, Any]]], **env: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.helpers.span_tree", json.dumps(turns)], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={**os.environ, "MODEL_PROVIDER": "echo", "SESSION_DB": str(tmp_path / "s.db"), **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def descendants(spans: list[dict[str, Any]], root: dict[str, Any]) -> list[dict[str, Any]]:
    children: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        children.setdefault(span["parent_id"], []).append(span)
    found, todo = [], [root["span_id"]]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child["span_id"])
    return found


def test_a_turns_spans_form_one_tree_under_the_turn_with_the_session_id_on_each_and_no_message_text(
        tmp_path: Path) -> None:
    data = run_turns(tmp_path, [
        ("told-1", {"message": f"My cat is called {SECRET} and she sleeps all day"}),
        ("asked-2", {"message": "What is my cat called?", "explain": True}),
    ])
    spans = data["spans"]
    turns = [s for s in spans if s["name"] == "assistant.turn"]
    assert [t["attributes"]["session.id"] for t in turns] == ["told-1", "asked-2"]
    for turn in turns:
        assert turn["parent_id"] is None or not any(s["span_id"] == turn["parent_id"] for s in spans
                                                    if s["name"].startswith("memory."))
        under = descendants(spans, turn)
        names = [s["name"] for s in under]
        for expected in ("memory.load_window", "memory.recall", "invoke_agent Strands Agents", "memory.store_turn",
                         "memory.longterm_record"):
            assert expected in names, (expected, names)
        assert all(s["attributes"].get("session.id") == turn["attributes"]["session.id"] for s in under), \
            [(s["name"], s["attributes"].get("session.id")) for s in under]
        agent_span = next(s for s in under if s["name"] == "invoke_agent Strands Agents")
        assert agent_span["parent_id"] == turn["span_id"]
        for step in ("memory.load_window", "memory.recall", "memory.store_turn"):  # Strands runs them as hooks
            span = next(s for s in under if s["name"] == step)
            assert span["parent_id"] == agent_span["span_id"], f"{step} is a child of the agent's invocation"
        record = next(s for s in under if s["name"] == "memory.longterm_record")
        assert record["parent_id"] == turn["span_id"]
    second = descendants(spans, turns[1])
    recall = next(s for s in second if s["name"] == "memory.recall")["attributes"]
    assert recall["memory.records_considered"] >= 1 and recall["memory.records_injected"] >= 1
    assert len(recall["memory.record_scores"]) == recall["memory.records_injected"]
    assert recall["memory.injected_tokens"] > 0
    loaded = next(s for s in second if s["name"] == "memory.load_window")["attributes"]
    assert loaded["memory.turns_loaded"] == 0 and loaded["memory.backend"] == "sqlite"
    ours = [s for s in spans if s["name"].startswith(("assistant.", "memory."))]
    assert not [s for s in ours if SECRET in json.dumps(s["attributes"])], "no message text in our spans"
    assert {"assistant.turn.duration", "assistant.memory.duration", "assistant.longterm.records_injected"} \
        <= set(data["metrics"])


def test_message_text_reaches_our_spans_only_when_content_capture_is_on(tmp_path: Path) -> None:
    data = run_turns(tmp_path, [("told-1", {"message": f"My cat is called {SECRET}"}),
                                ("asked-2", {"message": "What is my cat called?"})],
                     OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
    recall = [s for s in data["spans"] if s["name"] == "memory.recall"][-1]
    assert SECRET in json.dumps(recall["attributes"])


def test_without_an_exporter_nothing_is_configured_and_the_spans_do_not_record() -> None:
    assert configure_telemetry().startswith("off")
    assert not isinstance(trace.get_tracer_provider(), __import__("opentelemetry.sdk.trace").sdk.trace.TracerProvider)
    with turn_span("assistant.turn", request_id="r", actor_id="a", session_id="s", backend="sqlite") as span, \
            memory_span("load_window", backend="sqlite") as child:
        assert not span.is_recording() and not child.is_recording()


def otlp_env(endpoint: str, tmp_path: Path) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "10", "OTEL_METRIC_EXPORT_INTERVAL": "600000",
            "SESSION_DB": str(tmp_path / "s.db"), "LONG_TERM_MEMORY": "off"}


def test_with_otel_exporter_otlp_endpoint_the_server_sends_its_spans_to_the_collector(tmp_path: Path) -> None:
    with OTLPReceiver() as receiver:
        server = Server(otlp_env(receiver.base_url, tmp_path), log_path=tmp_path / "server.log").start()
        try:
            assert server.invoke({"message": "hello"}, session="conv-otlp")[0] == 200
            spans = receiver.wait_for("assistant.turn")
        finally:
            server.stop()
    turn = next(s for s in spans if s["name"] == "assistant.turn")
    same_trace = [s for s in spans if s["trace_id"] == turn["trace_id"]]
    assert {"memory.load_window", "memory.store_turn", "invoke_agent Strands Agents"} <= {s["name"] for s in same_trace}
    assert all(s["attributes"].get("session.id") == "conv-otlp" for s in same_trace)
    assert "telemetry=<otlp>" in server.log()


def timed_turns(server: Server, count: int) -> list[float]:
    took = []
    for i in range(count):
        started = time.perf_counter()
        status, _ = server.invoke({"message": f"turn {i}"}, session="collector-down", timeout=30)
        took.append(time.perf_counter() - started)
        assert status == 200
    return took


def test_a_dead_or_stalled_collector_neither_slows_nor_fails_a_turn_and_shutdown_stays_bounded(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: every export fails
    with OTLPReceiver(stall=True) as stalled:  # accepts, then never answers within the export timeout
        for endpoint in (closed, stalled.base_url):
            server = Server(otlp_env(endpoint, tmp_path), log_path=tmp_path / "server.log").start()
            try:
                took = timed_turns(server, 20)
            finally:
                started = time.monotonic()
                server.stop()
                stopped = time.monotonic() - started
            # the exporter's own timeout is 10 s: a turn that waited on it would take that long
            assert max(took) < 2.0, (endpoint, max(took))
            assert stopped < 8.0, f"shutdown waited {stopped:.1f} s on the collector"
