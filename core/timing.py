"""Per-request phase timings (store read, model, store write...), for the request's one log line.

``service.assistant`` starts a request's timings; the memory hooks (``timed``) and the
``ModelTimer`` hook add to them wherever Strands runs those callbacks: Strands runs an
agent with a copy of the caller's ``contextvars`` context, so they reach the same dict.
Nothing here ever sees message text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

_PHASES: ContextVar[dict[str, float] | None] = ContextVar("request_phases", default=None)


def start_timings() -> tuple[dict[str, float], Token[dict[str, float] | None]]:
    """A fresh phase -> milliseconds dict for the current request (reset the token when it ends)."""
    phases: dict[str, float] = {}
    return phases, _PHASES.set(phases)


def end_timings(token: Token[dict[str, float] | None]) -> None:
    _PHASES.reset(token)


def add_time(phase: str, started: float) -> None:
    """Add the time since ``started`` (``time.perf_counter()``) to the current request's ``phase``."""
    phases = _PHASES.get()
    if phases is not None:
        phases[phase] = phases.get(phase, 0.0) + (time.perf_counter() - started) * 1e3


@contextmanager
def timed(phase: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        add_time(phase, started)


def format_phases(phases: dict[str, float]) -> str:
    """``" (store_read 0.4, model 2.1, store_write 0.6)"``; empty when no phase was timed."""
    if not phases:
        return ""
    return " (" + ", ".join(f"{name} {ms:.1f}" for name, ms in phases.items()) + ")"
