"""``SESSION_TTL`` through the whole turn (``memory/expiry.py``): what a client of the served assistant sees.

The store contract (``tests/test_store_contract.py``, expiry section) pins the rule on every backend; these
run it end to end on the default backend (SQLite) with long-term memory on: a session id used again after
expiry gets its new turns recorded and recalled, its expired conversation's records stay, and a model slower
than the TTL never loses the turn it was given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bedrock_agentcore.runtime.context import RequestContext
from strands.types.content import Messages
from strands.types.streaming import StreamEvent

from core.settings import Settings
from memory.sqlite import SQLiteStore
from service import Assistant
from tests.helpers.longterm_helpers import local_ltm
from tests.helpers.scripted_model import ScriptedModel


def ctx(session: str) -> RequestContext:
    return RequestContext(session_id=session, request_headers=None)


def wait_until(condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll until ``condition()`` is truthy (expiry is time passing: there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.05)


class SlowModel(ScriptedModel):
    """An echoing model that takes ``delay`` seconds to start answering: slower than the session's TTL."""

    def __init__(self, delay: float) -> None:
        super().__init__(echo=True)
        self.delay = delay

    async def stream(self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[StreamEvent]:
        await asyncio.sleep(self.delay)
        async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
            yield event


def settings_for(tmp_path: Path) -> Settings:
    return replace(Settings.from_env({}), memory_backend="sqlite", session_db=tmp_path / "sessions.db",
                   model_provider="echo", session_ttl=1)


@pytest.fixture
def assistants(tmp_path: Path) -> Iterator[Callable[..., Assistant]]:
    made: list[Assistant] = []

    def make(store: SQLiteStore, model: ScriptedModel, with_long_term: bool = False) -> Assistant:
        assistant = Assistant(settings_for(tmp_path), store, model,
                              local_ltm(tmp_path / "longterm.db") if with_long_term else None)
        made.append(assistant)
        return assistant

    yield make
    for assistant in made:
        assistant.close()


def test_a_session_id_used_again_after_expiry_is_recorded_in_long_term_memory_again(
        tmp_path: Path, assistants: Callable[..., Assistant]) -> None:
    """The adversarial run: alice/x says something, the session expires (history and listing empty), alice/x
    says something new: it is turn 1 again, and its long-term record is stored and recalled, beside the
    expired conversation's record, which stays (expiry is not a delete). The turn's write ended its hold, so
    the session expires SESSION_TTL after it (not the turn grace)."""
    a = assistants(SQLiteStore(tmp_path / "sessions.db", ttl=1), ScriptedModel(echo=True), with_long_term=True)
    assert a.handle({"message": "my locker code is 9911", "actor_id": "alice"}, ctx("x"))["message_count"] == 1
    wait_until(lambda: a.handle({"action": "get_history", "actor_id": "alice"}, ctx("x"))["turns"] == [])
    assert a.handle({"action": "list_sessions", "actor_id": "alice"}, ctx("x"))["sessions"] == []
    answer = a.handle({"message": "new content: the shed key hangs behind the door", "actor_id": "alice"}, ctx("x"))
    assert answer["message_count"] == 1
    assert a.ltm is not None
    a.ltm.flush()

    def found(query: str) -> list[tuple[str, int, str]]:
        body = a.handle({"action": "search_memory", "query": query, "actor_id": "alice"}, ctx("y"))
        return [(m["session_id"], m["turn"], m["text"]) for m in body["memories"]]

    assert ("x", 1, "new content: the shed key hangs behind the door") in found("shed key behind the door")
    assert ("x", 1, "my locker code is 9911") in found("locker code")  # the expired conversation's record stays


def test_a_model_slower_than_the_ttl_never_loses_the_turn_it_was_given(
        tmp_path: Path, assistants: Callable[..., Assistant]) -> None:
    """SESSION_TTL=1 s, a model taking 1.5 s: three turns of one session count 1, 2, 3 and each sees the
    turns before it (it used to be (1, 0), (1, 1), (1, 1): the earlier turn gone when the next one stored)."""
    a = assistants(SQLiteStore(tmp_path / "sessions.db", ttl=1), SlowModel(1.5))
    seen = []
    for n in range(1, 4):
        answer = a.handle({"message": f"question {n}", "actor_id": "alice"}, ctx("s1"))
        seen.append((answer["message_count"], answer["history_length"]))
    assert seen == [(1, 0), (2, 1), (3, 2)]
