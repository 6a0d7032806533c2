"""The echo model after a fixed wait per call: what a user with a remote model (Bedrock) sees, minus its CPU.

``BENCH_MODEL_DELAY_MS`` (the benchmark's apps read it) sets the wait; every call waits, the rolling
summary's included, so a turn that folds waits twice, as with a real model. The wait is
``asyncio.sleep``: time on the clock, no CPU, like a network round trip.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable
from typing import Any

from models import EchoModel

DELAY_ENV = "BENCH_MODEL_DELAY_MS"


class WaitingEcho(EchoModel):
    """The echo model after ``delay`` seconds of waiting (no CPU): a remote model's latency."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.config["model_id"] = f"echo after {delay * 1e3:g} ms"

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[Any]:
        if self.delay:
            await asyncio.sleep(self.delay)
        async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
            yield event


def model_from_env() -> EchoModel:
    """``WaitingEcho`` when ``BENCH_MODEL_DELAY_MS`` is set (and not 0), else the plain echo model."""
    delay_ms = float(os.environ.get(DELAY_ENV) or 0)
    return WaitingEcho(delay_ms / 1e3) if delay_ms else EchoModel()
