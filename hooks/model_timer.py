"""A hook provider that adds every model call of one agent to the request's ``model`` phase."""

from __future__ import annotations

import time
from typing import Any

from strands.hooks import AfterModelCallEvent, BeforeModelCallEvent, HookProvider, HookRegistry

from core.timing import add_time


class ModelTimer(HookProvider):
    """Times the model calls of one agent (one ``ModelTimer`` per agent)."""

    def __init__(self) -> None:
        self._started: float | None = None

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(BeforeModelCallEvent, self.model_started)
        registry.add_callback(AfterModelCallEvent, self.model_finished)

    def model_started(self, event: BeforeModelCallEvent) -> None:
        self._started = time.perf_counter()

    def model_finished(self, event: AfterModelCallEvent) -> None:
        if self._started is not None:
            add_time("model", self._started)
            self._started = None
