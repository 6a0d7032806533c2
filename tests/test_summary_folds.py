"""The rolling summary's fold runs after the reply, off the request path: no turn waits for it.

The summariser here is held (``summary_gate``) so a fold is provably still pending while the
replies, the next turn, a clear and a shutdown happen.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from bedrock_agentcore.runtime.context import RequestContext
from starlette.testclient import TestClient

import agent
from core.settings import Settings
from hooks.folds import FoldQueue
from memory.base import SessionStore
from service import Assistant
from tests.conftest import store_factory_over
from tests.helpers.session_helpers import FactKeepingModel, chat_calls, summary_inputs
from tests.test_rolling_summary import summarised_through
from tests.test_streaming import stream

store_factory = store_factory_over(("memory", "sqlite", "redis"))


@pytest.fixture
def model() -> FactKeepingModel:
    gated = FactKeepingModel()
    gated.summary_gate = threading.Event()  # closed: every fold waits until a test opens it
    return gated


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, memory_k=4, summary_batch=2)


@pytest.fixture
def gate(model: FactKeepingModel) -> Iterator[threading.Event]:
    assert model.summary_gate is not None
    yield model.summary_gate
    model.summary_gate.set()  # never leave a fold waiting past its test


def turn(n: int, session: str = "s") -> dict[str, Any]:
    return agent.chat_handler({"message": f"my fact{n} is v{n}"}, RequestContext(session_id=session))


def facts_seen(model: FactKeepingModel, call: int) -> set[int]:
    """The fact numbers in front of the model in one chat call: in the summary or as messages (the new one too)."""
    seen = model.memory_block(call) + " ".join(text for _, text in model.seen_texts(call))
    return {int(n) for n in re.findall(r"my fact(\d+) is v\1", seen)}


def test_the_reply_and_the_next_turn_do_not_wait_for_a_fold(
    assistant: Assistant, model: FactKeepingModel, store: SessionStore, gate: threading.Event
) -> None:
    for n in range(1, 5):
        assert turn(n)["message_count"] == n
    # turn 4 filled the window (k=4): the fold for the request after next is queued, and held
    assert assistant.folds.pending == 1 and store.get_summary("default_user", "s") is None
    body = turn(5)  # answered while the fold is still held
    assert body["message_count"] == 5 and body["history_length"] == 4
    assert facts_seen(model, chat_calls(model)[-1]) == {1, 2, 3, 4, 5}  # turns 1-4 verbatim: no gap
    gate.set()
    assert assistant.folds.join(10)
    summary = store.get_summary("default_user", "s")
    assert summary is not None and summary.through_turn >= 2  # what the request after next needs (window 3-6)
    assert len(summary_inputs(model)) == 1  # the queued folds of turns 4 and 5 ran as one call


@pytest.mark.parametrize("batch", [1, 2, 3])
@pytest.mark.parametrize("released_after", [0, 1], ids=["even-turns", "odd-turns"])
def test_with_each_fold_finishing_after_the_next_turn_the_model_never_misses_a_turn(
    settings: Settings, store: SessionStore, model: FactKeepingModel, gate: threading.Event, batch: int,
    released_after: int,
) -> None:
    """The slowest summariser that still keeps up: every fold ends only after the next turn has answered."""
    assistant = Assistant(replace(settings, memory_backend=store.name, summary_batch=batch), store, model)
    agent.set_assistant(assistant)
    try:
        for n in range(1, 25):
            turn(n)
            if n % 2 == released_after:  # the other turns run while the previous turn's fold is held
                gate.set()
                assert assistant.folds.join(10)
                gate.clear()
    finally:
        agent.set_assistant(None)
        gate.set()
        assistant.folds.close(10)
    chats = chat_calls(model)
    assert len(chats) == 24
    for n, call in enumerate(chats, start=1):
        assert facts_seen(model, call) == set(range(1, n + 1)), f"turn {n} missed a turn"
        if n > 5:
            assert summarised_through(model.memory_block(call)) >= n - 5  # the summary reaches the window
    assert summary_inputs(model), "no fold ran"


def test_a_streamed_turn_sends_its_final_event_without_waiting_for_the_fold(
    client: TestClient, assistant: Assistant, gate: threading.Event
) -> None:
    for n in range(1, 5):
        *_, final = stream(client, {"message": f"my fact{n} is v{n}", "stream": True}, "streamed")
        assert final["message_count"] == n
    assert assistant.folds.pending == 1  # the fold after turn 4 is held: the stream still ended
    gate.set()
    assert assistant.folds.join(10)


def test_a_clear_during_a_pending_fold_wins(
    assistant: Assistant, store: SessionStore, gate: threading.Event
) -> None:
    for n in range(1, 6):
        turn(n)
    assert assistant.folds.pending >= 1  # turn 4's fold held in the summariser (turn 5's waiting, or merged in)
    cleared = agent.chat_handler({"action": "clear_session"}, RequestContext(session_id="s"))
    assert cleared["deleted"] == 5
    gate.set()
    assert assistant.folds.join(10)
    assert store.get_summary("default_user", "s") is None  # the fold's write was refused: the delete stands
    assert store.get_last_k_turns("default_user", "s", 10) == []
    assert turn(1)["message_count"] == 1 and turn(2)["history_length"] == 1


def test_shutdown_runs_the_waiting_folds_first(
    settings: Settings, store: SessionStore, model: FactKeepingModel, gate: threading.Event
) -> None:
    assistant = Assistant(replace(settings, memory_backend=store.name), store, model)
    agent.set_assistant(assistant)
    try:
        for n in range(1, 6):
            turn(n)
    finally:
        agent.set_assistant(None)
    threading.Timer(0.3, gate.set).start()  # the summariser answers while close() waits
    assistant.folds.close(10)
    summary = store.get_summary("default_user", "s")
    assert summary is not None and "my fact1 is v1" in summary.text
    assert len(store.get_last_k_turns("default_user", "s", 10)) == 5


# -- the queue itself -------------------------------------------------------------------------------

def test_folds_of_one_session_run_one_at_a_time_and_the_newest_waiting_one_replaces_the_older() -> None:
    folds = FoldQueue(workers=4)
    release = threading.Event()
    ran: list[str] = []
    running = threading.Semaphore(0)

    def job(name: str) -> Any:
        def run() -> None:
            ran.append(name)
            running.release()
            assert release.wait(10)
        return run

    assert folds.submit("s", job("first"))
    assert running.acquire(timeout=10)  # "first" runs (and is held)
    assert folds.submit("s", job("second")) and folds.submit("s", job("third"))  # third replaces second
    assert folds.submit("other", job("other"))  # another session is not held up by s
    assert running.acquire(timeout=10)
    assert ran == ["first", "other"]
    release.set()
    assert folds.join(10)
    assert ran == ["first", "other", "third"]


def test_a_full_queue_drops_a_new_session_s_fold_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    folds = FoldQueue(workers=1, max_sessions=1)
    started, release = threading.Event(), threading.Event()
    assert folds.submit("a", lambda: (started.set(), release.wait(10)))
    assert started.wait(10)  # "a" runs: it no longer waits
    assert folds.submit("b", lambda: None)  # one session waits: that is the bound
    with caplog.at_level(logging.WARNING, logger="hooks.folds"):
        assert not folds.submit("c", lambda: None)
    assert "fold dropped" in caplog.text and folds.dropped == 1
    release.set()
    assert folds.join(10)


def test_close_abandons_what_does_not_finish_in_time_and_refuses_new_folds(caplog: pytest.LogCaptureFixture) -> None:
    folds = FoldQueue(workers=1)
    release = threading.Event()
    ran: list[str] = []
    assert folds.submit("a", lambda: release.wait(10))
    assert folds.submit("b", lambda: ran.append("b"))
    with caplog.at_level(logging.WARNING, logger="hooks.folds"):
        started = time.monotonic()
        assert folds.close(0.2) == 1
    assert time.monotonic() - started < 5
    assert "1 rolling summary folds abandoned, 1 still running" in caplog.text
    assert not folds.submit("c", lambda: ran.append("c"))
    release.set()
    time.sleep(0.2)
    assert ran == []  # "b" was abandoned, "c" refused
