"""The echo model after a fixed wait per call: what a user with a remote model (Bedrock) sees, minus its CPU.

``BENCH_MODEL_DELAY_MS`` (the benchmark's apps read it) sets the wait; every call waits, the rolling
summary's included, so a fold waits as long as a turn, as with a real model. The wait is
``asyncio.sleep``: time on the clock, no CPU, like a network round trip. Like a real model it
stops at the call's token cap (``MAX_TOKENS``, or ``SUMMARY_MAX_TOKENS`` for the summaries: a word
per token) with stop reason ``max_tokens``: the plain echo model "summarises" by repeating the
whole transcript it is sent (thousands of words, one stream event each), which no summariser does.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable
from typing import Any

from models import EchoModel
from models.base import last_user_text, text_stream

DELAY_ENV = "BENCH_MODEL_DELAY_MS"


class WaitingEcho(EchoModel):
    """The echo model after ``delay`` seconds of waiting (no CPU): a remote model's latency."""

    def __init__(self, delay: float, max_tokens: int | None = None) -> None:
        super().__init__()
        self.delay = delay
        self.max_tokens = max_tokens
        self.config["model_id"] = f"echo after {delay * 1e3:g} ms"

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[Any]:
        if self.delay:
            await asyncio.sleep(self.delay)
        words = f"You said '{last_user_text(messages)}'".split(" ")
        if self.max_tokens is not None and len(words) > self.max_tokens:
            events = text_stream(" ".join(words[: self.max_tokens]), "max_tokens")
        else:
            events = text_stream(" ".join(words))
        for event in events:
            yield event


def model_from_env(max_tokens: int | None = None) -> EchoModel:
    """``WaitingEcho`` (stopping at ``max_tokens`` words) when ``BENCH_MODEL_DELAY_MS`` is set, else plain echo."""
    delay_ms = float(os.environ.get(DELAY_ENV) or 0)
    return WaitingEcho(delay_ms / 1e3, max_tokens) if delay_ms else EchoModel()
