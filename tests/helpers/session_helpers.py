"""Helpers for the session-tool and rolling-summary tests: run a turn the way the assistant does, read calls."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterable
from typing import Any

from strands import Agent
from strands.types.content import Messages
from strands.types.streaming import StreamEvent

from hooks.memory import MemoryHooks
from hooks.summary import RollingSummary
from memory.base import SessionStore
from memory.turn import TurnState
from models import last_user_text
from models.base import text_stream
from models.summarizer import SUMMARY_SYSTEM_PROMPT, Summarizer
from tests.helpers.scripted_model import ScriptedModel
from tools.session import SessionTools


def run_turn(store: SessionStore, model: ScriptedModel, message: str, *, actor: str = "alice",
             session: str = "s1", k: int = 10, rolling: bool = False,
             summarizer: Summarizer | None = None, batch: int | None = None,
             max_tokens: int | None = None) -> TurnState:
    """One turn as the turn pipeline wires it: memory hooks plus session tools bound to the turn's state, then
    (``rolling``) the rolling summary's fold, inline (no fold queue). Returns the turn's state."""
    summarizer = summarizer or Summarizer(model)
    rolling_summary = RollingSummary(store, summarizer, k, batch, max_tokens) if rolling else None
    state = TurnState(actor, session)
    hooks = MemoryHooks(store, state, k, max_tokens=max_tokens, rolling=rolling)
    tools = SessionTools(store, state, summarizer)
    Agent(model=model, system_prompt="You are a test assistant.", tools=tools.tools, hooks=[hooks],
          callback_handler=None)(message)
    if rolling_summary is not None:
        rolling_summary.after_turn(state)
    return state


def summary_inputs(model: ScriptedModel) -> list[str]:
    """The transcript of every summariser call the model received, in order."""
    return [
        last_user_text(messages)
        for messages, system in zip(model.calls, model.system_prompts)
        if system == SUMMARY_SYSTEM_PROMPT
    ]


def chat_calls(model: ScriptedModel) -> list[int]:
    """Indexes (into ``model.calls``) of the calls that were not summariser calls."""
    return [i for i, system in enumerate(model.system_prompts) if system != SUMMARY_SYSTEM_PROMPT]


def tool_results(model: ScriptedModel) -> list[dict[str, Any]]:
    """Every toolResult block the model was sent (deduplicated by toolUseId), oldest first."""
    seen: dict[str, dict[str, Any]] = {}
    for messages in model.calls:
        for message in messages:
            for block in message["content"]:
                if "toolResult" in block:
                    seen.setdefault(block["toolResult"]["toolUseId"], block["toolResult"])
    return list(seen.values())


def result_text(result: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in result["content"])


def summary_quote(result: dict[str, Any]) -> str:
    """The summary a ``summarize_session`` result quotes (the result is the fenced block, one item)."""
    from core.quoting import SUMMARY_PREAMBLE
    from tests.helpers.scripted_model import quoted_items

    text = result_text(result)
    assert text.startswith(SUMMARY_PREAMBLE), text
    [item] = quoted_items(text)
    return item["quote"]


class FactKeepingModel(ScriptedModel):
    """Echoes chat turns; as a summariser it keeps every "my <thing> is <value>" it is given, like a good summary.

    Summary calls may run beside chat calls (the server folds after the reply, on its own thread):
    they never touch the scripted steps, which stay the chat calls'. ``summary_gate``, when set,
    holds every summary call until it is set (a slow summariser).
    """

    def __init__(self, *steps: Any) -> None:
        super().__init__(*steps, echo=True)
        self.summary_gate: threading.Event | None = None

    async def stream(self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[StreamEvent]:
        if system_prompt != SUMMARY_SYSTEM_PROMPT:
            async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
                yield event
            return
        if self.summary_gate is not None:
            assert await asyncio.to_thread(self.summary_gate.wait, 30), "the summary gate was never opened"
        facts = dict.fromkeys(re.findall(r"[Mm]y \w+ is \w+", last_user_text(messages)))
        with self._lock:
            self.record(messages, system_prompt)
        for event in text_stream("Facts: " + "; ".join(facts) if facts else "Nothing of note."):
            yield event
