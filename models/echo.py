"""``MODEL_PROVIDER=echo``: offline and deterministic, for tests and benchmarks. Not a language model."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

from strands.models import Model
from strands.types.content import Messages
from strands.types.streaming import StreamEvent

from models.base import last_user_text, text_stream


class EchoModel(Model):
    """Replies ``You said '<message>'``."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {"model_id": "echo"}

    def update_config(self, **model_config: Any) -> None:
        self.config.update(model_config)

    def get_config(self) -> dict[str, Any]:
        return self.config

    async def structured_output(self, output_model: Any, prompt: Messages, system_prompt: str | None = None,
                                **kwargs: Any) -> AsyncGenerator[dict[str, Any], None]:
        raise NotImplementedError("the echo model has no structured output")
        yield {}  # pragma: no cover - makes this an async generator

    async def stream(self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[StreamEvent]:
        for event in text_stream(f"You said '{last_user_text(messages)}'"):
            yield event
