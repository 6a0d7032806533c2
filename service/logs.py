"""Logs: the one line of each request, and the process's log set-up (text or JSON, on stderr).

Nothing here ever sees message text: the request line carries ids, status, latency,
phase timings (``core.timing``) and the outcome's counters.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from bedrock_agentcore.runtime.context import BedrockAgentCoreContext

from core.timing import format_phases

logger = logging.getLogger(__name__)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class RequestLine:
    """The one log line of one request: ids, backend, status, latency, phase timings, outcome."""

    request_id: str | None
    actor_id: str | None
    session_id: str | None
    backend: str
    started: float
    phases: dict[str, float]

    def log(self, status: int, outcome: str, fields: dict[str, Any] | None = None, exc_info: bool = False) -> None:
        latency = (time.perf_counter() - self.started) * 1e3
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        structured = {
            "request_id": self.request_id, "actor_id": self.actor_id, "session_id": self.session_id,
            "backend": self.backend, "status": status, "latency_ms": round(latency, 1),
            "phases_ms": {k: round(v, 1) for k, v in self.phases.items()}, **(fields or {}),
        }
        if status >= 400:
            structured["error"] = outcome
        logger.log(
            level, "request_id=<%s> | actor_id=<%s> | session_id=<%s> | backend=<%s> | status=<%d> | %.1f ms%s | %s",
            self.request_id, self.actor_id, self.session_id, self.backend, status, latency,
            format_phases(self.phases), outcome, exc_info=exc_info, extra={"fields": structured},
        )



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
