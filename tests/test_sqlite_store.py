"""SQLite only: connections are reused across requests, never opened per request and left open."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from service import Assistant, ChatRequest
from core.settings import Settings
from memory.sqlite import MAX_IDLE_CONNECTIONS, SQLiteStore
from tests.scripted_model import ScriptedModel


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_many_turns_do_not_leave_connections_open(tmp_path: Path) -> None:
    # Each turn on a thread of its own (as Strands' agent() runs every invocation, and as the rolling
    # summary's call still runs): a connection per thread used to stay open after each request, two files each.
    store = SQLiteStore(tmp_path / "sessions.db")
    settings = replace(Settings.from_env({}), session_db=tmp_path / "sessions.db", model_provider="echo",
                       rolling_summary=False)
    assistant = Assistant(settings, store, ScriptedModel(echo=True))
    assistant.chat(ChatRequest(message="warm up", actor_id="u", session_id="s0"))
    before = open_files()
    for i in range(60):
        bodies: list[dict[str, object]] = []
        request = ChatRequest(message=f"message {i}", actor_id="u", session_id=f"s{i % 3}")
        turn = threading.Thread(target=lambda r=request, b=bodies: b.append(assistant.chat(r)))
        turn.start()
        turn.join(30)
        assert bodies[0]["response"] == f"You said 'message {i}'"
    assert open_files() - before <= 2 * MAX_IDLE_CONNECTIONS
    assert [len(store.get_last_k_turns("u", f"s{n}", 100)) for n in range(3)] == [21, 20, 20]
    assistant.close()
    assert open_files() < before


def test_short_lived_threads_share_connections(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    before = open_files()

    def turn(n: int) -> None:
        store.add_turns("u", "s", [ConversationalMessage(f"q{n}", MessageRole.USER),
                                   ConversationalMessage(f"a{n}", MessageRole.ASSISTANT)])
        store.get_last_k_turns("u", "s", 3)

    for n in range(100):
        t = threading.Thread(target=turn, args=(n,))
        t.start()
        t.join()
    assert open_files() - before <= 2 * MAX_IDLE_CONNECTIONS
    assert len(store.list_events("u", "s")) == 100
    store.close()
