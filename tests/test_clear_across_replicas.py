"""A cleared conversation stays cleared (#11 item 2), with two replicas of the server on one store.

Two Assistants on one SQLite file, one Redis prefix (and, where the backend allows it, one
in-process store or one AgentCore memory): replica A is in the middle of a turn while replica
B clears the session. Nothing A writes afterwards may bring back what the clear removed: not
its rolling summary (which held a PIN the user asked to forget), not its turn.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from bedrock_agentcore.runtime.context import RequestContext
from starlette.responses import JSONResponse
from strands.types.content import Messages
from strands.types.streaming import StreamEvent

from core.settings import Settings
from models.summarizer import SUMMARY_SYSTEM_PROMPT
from service import Assistant
from tests.conftest import StoreFactory
from tests.helpers.http_load import in_thread
from tests.helpers.scripted_model import ScriptedModel
from tests.helpers.session_helpers import FactKeepingModel

ACTOR = "default_user"
PIN = "4721"


def ctx(session: str) -> RequestContext:
    return RequestContext(session_id=session, request_headers=None)


class GatedModel(FactKeepingModel):
    """A fact-keeping model whose next call of one kind (a summary, or a chat turn) waits for ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate_summary = self.gate_chat = False
        self.entered = threading.Event()
        self.release = threading.Event()

    async def stream(self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[StreamEvent]:
        is_summary = system_prompt == SUMMARY_SYSTEM_PROMPT
        if (self.gate_summary and is_summary) or (self.gate_chat and not is_summary):
            self.gate_summary = self.gate_chat = False
            self.entered.set()
            assert await asyncio.to_thread(self.release.wait, 30)
        async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
            yield event


@pytest.fixture
def replicas(settings: Settings, store_factory: StoreFactory) -> Iterator[tuple[Assistant, Assistant]]:
    """Replica A (a gated model) and replica B (an echoing one) on one store, MEMORY_K=2, SUMMARY_BATCH=1."""
    first = store_factory.make()
    second = first if store_factory.name == "memory" else store_factory.make()  # in-process: one store object
    settings = replace(settings, memory_backend=first.name, memory_k=2, summary_batch=1, rolling_summary=True)
    a = Assistant(settings, first, GatedModel())
    b = Assistant(settings, second, FactKeepingModel())
    yield a, b
    a.close()
    b.close()


def send(replica: Assistant, body: dict[str, Any], session: str = "bank") -> Any:
    return replica.handle(body, ctx(session))


def everything_the_model_saw(model: ScriptedModel, since: int = 0) -> str:
    return " ".join([str(p) for p in model.system_prompts[since:]] +
                    [model.memory_block(call) for call in range(since, len(model.calls))] +
                    [text for call in range(since, len(model.calls)) for _, text in model.seen_texts(call)])


def test_a_summary_fold_running_during_a_clear_on_another_replica_never_resurrects_the_conversation(
        replicas: tuple[Assistant, Assistant]) -> None:
    a, b = replicas
    model_a = a.model
    assert isinstance(model_a, GatedModel)
    send(a, {"message": f"My PIN is {PIN}"})
    send(a, {"message": "My bank is Nordea"})
    assert a.folds.join(10)  # turn 2's fold (turn 1) is done
    model_a.gate_summary = True  # turn 3 is stored and answered, then its fold (through turn 2) waits in the summariser
    thread, out = in_thread(lambda: send(a, {"message": "My city is Oslo"}))
    assert model_a.entered.wait(30)
    cleared = send(b, {"action": "clear_session"})
    assert cleared["deleted"] == 3
    model_a.release.set()
    thread.join(30)
    assert a.folds.join(10)
    assert out["result"]["message_count"] == 3  # A's turn was stored before the clear (and the clear removed it)
    assert b.store.get_summary(ACTOR, "bank") is None and a.store.get_summary(ACTOR, "bank") is None

    # the new conversation grows past MEMORY_K, so any stored summary would be read into the prompt
    seen_from = len(b.model.calls)
    for n, text in enumerate(["Hello again", "What is my PIN?", "Do you know my PIN?", "Tell me my PIN"], start=1):
        answer = send(b, {"message": text})
        assert answer["message_count"] == n
    assert PIN not in everything_the_model_saw(b.model, seen_from)
    summary = b.store.get_summary(ACTOR, "bank")
    assert summary is None or PIN not in summary.text
    assert [m.text for e in b.store.list_events(ACTOR, "bank") for m in e.messages if PIN in m.text] == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_turn_running_during_a_clear_on_another_replica_is_a_409_that_stores_nothing(
        replicas: tuple[Assistant, Assistant], store_factory: StoreFactory, stream: bool) -> None:
    if store_factory.no_shared_generations:
        pytest.skip(store_factory.no_shared_generations)
    a, b = replicas
    model_a = a.model
    assert isinstance(model_a, GatedModel)
    send(b, {"message": f"My PIN is {PIN}"})
    model_a.gate_chat = True  # A loads the window (the PIN's turn), then its model call waits
    thread, out = in_thread(lambda: (lambda r: r if isinstance(r, JSONResponse) else list(r))(
        send(a, {"message": "Remember it well", "stream": stream, "idempotency_key": "remember-1"})))
    assert model_a.entered.wait(30)
    assert send(b, {"action": "clear_session"})["deleted"] == 1
    model_a.release.set()
    thread.join(30)
    result = out["result"]
    if stream:
        *deltas, final = result
        assert "".join(deltas) == "You said 'Remember it well'"  # streamed before the write was refused
        assert final["status"] == 409 and "cleared" in final["error"]
    else:
        assert isinstance(result, JSONResponse) and result.status_code == 409
        assert "cleared" in result.body.decode()
    assert b.store.list_events(ACTOR, "bank") == []  # nothing of A's turn was stored
    assert b.store.find_request(ACTOR, "bank", "remember-1") is None  # so its retry runs as a new turn
    retry = send(a, {"message": "Remember it well", "idempotency_key": "remember-1"})
    assert (retry["message_count"], retry["history_length"]) == (1, 0) and "replayed" not in retry
    assert PIN not in everything_the_model_saw(model_a, len(model_a.calls) - 1)
