"""Logs: one line per request with its phase timings, and the process's log set-up (text or JSON).

``Assistant.handle`` starts a request's timings; the memory hooks (``timed``) and the
``ModelTimer`` hook add to them wherever Strands runs those callbacks: Strands runs an
agent in a worker thread with a copy of the caller's ``contextvars`` context, so they
reach the same dict. Nothing here ever sees message text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import datetime, timezone
from typing import Any

from bedrock_agentcore.runtime.context import BedrockAgentCoreContext
from strands.hooks import AfterModelCallEvent, BeforeModelCallEvent, HookProvider, HookRegistry

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_PHASES: ContextVar[dict[str, float] | None] = ContextVar("request_phases", default=None)


# -- phase timings --------------------------------------------------------------------------------

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


class ModelTimer(HookProvider):
    """Adds every model call of one agent to the request's ``model`` phase. One per agent."""

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


def format_phases(phases: dict[str, float]) -> str:
    """``" (store_read 0.4, model 2.1, store_write 0.6)"``; empty when no phase was timed."""
    if not phases:
        return ""
    return " (" + ", ".join(f"{name} {ms:.1f}" for name, ms in phases.items()) + ")"


# -- the process's log set-up ---------------------------------------------------------------------

_FIELD = re.compile(r"(\w+)=<([^<>]*)>")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the line's ``key=<value>`` ids as fields.

    The request line also carries its fields structured (``extra={"fields": ...}``): status,
    latency and phase timings as numbers. A line without a request id gets the runtime's
    current one, as the runtime's own formatter does.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        fields = {**dict(_FIELD.findall(message)), **(getattr(record, "fields", None) or {})}
        entry.update((key, value) for key, value in fields.items() if key not in entry)
        if "request_id" not in entry:
            request_id = BedrockAgentCoreContext.get_request_id()
            if request_id:
                entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class DropLines(logging.Filter):
    """Drops a library's records whose message template starts with one of ``prefixes``."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.prefixes))


#: library lines that repeat what our one request line says (and which would log one failure twice):
#: the runtime's own per-invocation outcome, and Strands' "event loop cycle failed" ERROR for an
#: exception it re-raises to us. Everything else they log stays, e.g. the runtime's "Invalid JSON in
#: request": the only line of a request refused before our handler is called.
DUPLICATE_LINES = {
    "bedrock_agentcore.app": ("Invocation completed successfully", "Invocation returned HTTP"),
    "strands.event_loop.event_loop": ("exception=<%s> | event loop cycle failed",),
}


def install_log_filters() -> None:
    """Route the AgentCore runtime's log through ours, once, and drop the library lines ours replace.

    ``BedrockAgentCoreApp`` gives its logger a handler of its own and also lets records
    propagate, so each of its lines was printed twice, in two formats.
    """
    runtime = logging.getLogger("bedrock_agentcore.app")
    for handler in list(runtime.handlers):
        runtime.removeHandler(handler)
    runtime.propagate = True
    for name, prefixes in DUPLICATE_LINES.items():
        library = logging.getLogger(name)
        if not any(isinstance(f, DropLines) for f in library.filters):
            library.addFilter(DropLines(*prefixes))


def configure_logging(level: str, log_format: str = "text") -> None:
    """The process's one log handler (stderr), in ``LOG_FORMAT`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per local-model call, without our ids
    install_log_filters()
