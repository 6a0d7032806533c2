"""A Strands model for tests: replays scripted replies and records what it was sent.

Each call to ``stream`` takes the next scripted step: a string (a text reply),
a dict ``{"tool": name, "input": {...}}`` (a ``toolUse``), a dict
``{"text": ..., "stop_reason": "max_tokens"}`` (a reply with that stop reason), or
an Exception (raised, as a failing model would). Calling it more often than scripted fails
loudly; ``calls`` holds a deep copy of the messages of every call, so a test can
assert exactly which history the model saw.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

from strands.models import Model
from strands.types.content import Messages
from strands.types.streaming import StreamEvent

from core.quoting import MEMORY_CLOSE, MEMORY_OPEN, own_words
from models.base import last_user_text, text_stream

Step = str | dict[str, Any] | BaseException


class ScriptedModel(Model):
    def __init__(self, *steps: Step, echo: bool = False) -> None:
        """``echo=True`` answers ``You said '<message>'`` once the script has run out."""
        self.steps: list[Step] = list(steps)
        self.echo = echo
        self.calls: list[Messages] = []
        self.system_prompts: list[str | None] = []
        self._lock = threading.Lock()
        self.config: dict[str, Any] = {"model_id": "scripted"}

    def update_config(self, **model_config: Any) -> None:
        self.config.update(model_config)

    def get_config(self) -> dict[str, Any]:
        return self.config

    async def structured_output(self, output_model: Any, prompt: Messages, system_prompt: str | None = None,
                                **kwargs: Any) -> AsyncGenerator[dict[str, Any], None]:
        raise NotImplementedError
        yield {}  # pragma: no cover

    @property
    def last_messages(self) -> Messages:
        assert self.calls, "the model was never called"
        return self.calls[-1]

    def seen_texts(self, call: int = -1) -> list[tuple[str, str]]:
        """(role, text) of every text block of the messages the model saw in one call.

        The recalled-memory block the hooks put ahead of the new message is not one of them: ``memory_block``.
        """
        seen = []
        for message in self.calls[call]:
            texts = [block["text"] for block in message["content"] if "text" in block]
            seen += [(message["role"], text) for text in (own_words(texts) if message["role"] == "user" else texts)]
        return seen

    def memory_block(self, call: int = -1) -> str:
        """The recalled-memory block the model was handed in one call ("" when none).

        The hooks put it first in the user message of the new turn (``hooks/framing.py``).
        """
        blocks = []
        for message in self.calls[call]:
            texts = [block["text"] for block in message["content"] if "text" in block]
            if message["role"] == "user" and own_words(texts) != texts:
                blocks.append(texts[0])
        assert len(blocks) <= 1, f"more than one memory block in call {call}: {blocks!r}"
        return blocks[0] if blocks else ""

    def quoted(self, call: int = -1) -> list[dict[str, Any]]:
        """The items of the memory block of one call, each read back from its one line of JSON."""
        return quoted_items(self.memory_block(call))

    def record(self, messages: Messages, system_prompt: str | None) -> None:
        """Remember one call (the caller holds ``_lock``)."""
        self.calls.append([{"role": m["role"], "content": copy.deepcopy(m["content"])} for m in messages])
        self.system_prompts.append(system_prompt)

    async def stream(self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[StreamEvent]:
        with self._lock:
            self.record(messages, system_prompt)
            if self.steps:
                step: Step = self.steps.pop(0)
            elif self.echo:
                step = f"You said '{last_user_text(messages)}'"
            else:
                raise AssertionError(f"ScriptedModel called more often than scripted (call {len(self.calls)})")
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, dict) and "text" in step:
            events: list[StreamEvent] = text_stream(step["text"], step.get("stop_reason", "end_turn"))
        elif isinstance(step, dict):
            tool_use_id = step.get("id", f"tooluse-{len(self.calls)}")
            events = [
                {"messageStart": {"role": "assistant"}},
                {"contentBlockStart": {"start": {"toolUse": {"toolUseId": tool_use_id, "name": step["tool"]}}}},
                {"contentBlockDelta": {"delta": {"toolUse": {"input": _json(step.get("input", {}))}}}},
                {"contentBlockStop": {}},
                {"messageStop": {"stopReason": "tool_use"}},
            ]
        else:
            events = text_stream(step)
        for event in events:
            yield event

    def assert_script_done(self) -> None:
        assert not self.steps, f"scripted steps left over: {self.steps!r}"


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def quoted_items(block: str) -> list[dict[str, Any]]:
    """The lines between a memory block's fence, each parsed as the one JSON object it must be."""
    if not block:
        return []
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(MEMORY_OPEN))
    end = lines.index(MEMORY_CLOSE)
    assert end > start and lines.count(MEMORY_CLOSE) == 1, block
    return [json.loads(line) for line in lines[start + 1:end]]
