"""Logs: the one line of each request, and the process's log set-up (text or JSON, on stderr).

Nothing here ever sees message text: the request line carries ids, status, latency,
phase timings (``core.timing``) and the outcome's counters.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from bedrock_agentcore.runtime.context import BedrockAgentCoreContext

from core.settings import Settings
from core.telemetry import record_request
from core.timing import format_phases
from memory import describe_store  # the start-up line's store=<...>: as its registry entry describes it
from memory.registry import without_password  # noqa: F401 - kept importable from here

logger = logging.getLogger(__name__)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: characters an id keeps in a text log line; any other is %-escaped, so an id cannot forge fields
#: (``%`` itself is kept: an escaped id logged again stays as it is)
SAFE_ID_CHARS = "-_.:%"
_SAFE_ID = re.compile(r"[A-Za-z0-9\-_.:%]*")
#: longest id written into a log line (the valid ones are at most 255 characters)
MAX_LOGGED_ID = 256


def safe_id(value: object) -> str:
    """An id as it may appear between ``<`` and ``>`` in a log line: anything but ``[A-Za-z0-9-_.:%]`` %-escaped.

    A request id, session or actor id comes from the client and is logged before (or
    without) being validated: ``abc> | actor_id=<victim`` must not read as another field.
    """
    if value is None:
        return "None"
    text = str(value)
    if not _SAFE_ID.fullmatch(text):
        text = quote(text.encode("utf-8", "surrogatepass"), safe=SAFE_ID_CHARS)
    return text if len(text) <= MAX_LOGGED_ID else f"{text[:MAX_LOGGED_ID]}...({len(text)} characters)"


def _structured_id(value: str | None) -> str | None:
    return None if value is None else safe_id(value)


@dataclass
class RequestLine:
    """The one log line of one request: ids, backend, status, latency, phase timings, outcome."""

    request_id: str | None
    actor_id: str | None
    session_id: str | None
    backend: str
    started: float
    phases: dict[str, float]

    def log(self, status: int, outcome: str, fields: dict[str, Any] | None = None,
            exc_info: bool | BaseException = False) -> None:
        latency = (time.perf_counter() - self.started) * 1e3
        record_request(status, latency / 1e3)  # the turn-duration histogram and the 429/503 counter
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        structured = {
            "request_id": _structured_id(self.request_id), "actor_id": _structured_id(self.actor_id),
            "session_id": _structured_id(self.session_id),
            "backend": self.backend, "status": status, "latency_ms": round(latency, 1),
            "phases_ms": {k: round(v, 1) for k, v in self.phases.items()}, **(fields or {}),
        }
        if status >= 400:
            structured["error"] = outcome
        logger.log(
            level, "request_id=<%s> | actor_id=<%s> | session_id=<%s> | backend=<%s> | status=<%d> | %.1f ms%s | %s",
            safe_id(self.request_id), safe_id(self.actor_id), safe_id(self.session_id), self.backend, status, latency,
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
    "bedrock_agentcore.app": ("Invocation completed successfully", "Invocation returned HTTP",
                              "Returning streaming response"),
    "strands.event_loop.event_loop": ("exception=<%s> | event loop cycle failed",),
}
#: library INFO lines that say nothing about the request (our request line is the one INFO line of each):
#: Strands' recovery note on every reply cut at MAX_TOKENS (it speaks of tool uses even when none was
#: made; our line says ``truncated=True``), and its metrics client's creation
NOISE_LINES = {
    "strands.event_loop._recover_message_on_max_tokens_reached": ("handling max_tokens stop reason",),
    "strands.telemetry.metrics": ("Creating Strands MetricsClient",),
    # under opentelemetry-instrument, Strands instruments threading a second time (harmless)
    "opentelemetry.instrumentation.instrumentor": ("Attempting to instrument while already instrumented",),
}
#: a repeated log line (same logger, level and template) is let through once per this many seconds
REPEAT_WINDOW_SECONDS = 10.0


class RateLimitRepeats(logging.Filter):
    """Lets a repeated WARNING-or-worse line through once per ``window`` seconds, then says how many it held back.

    A failure that repeats in a tight loop (``socket.accept() out of system resource`` when
    descriptors run out, the same warning for every connection of a flood) must not fill
    the disk with its traceback. Request lines are never held back: each is one request.
    Lines are told apart by logger, level and message template (the first line of it).
    """

    def __init__(self, window: float = REPEAT_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # key -> (let through at, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or hasattr(record, "fields"):  # "fields": one request's line
            return True
        key = (record.name, record.levelno, str(record.msg).split("\n", 1)[0])
        now = self.clock()
        with self._lock:
            last, held = self._seen.get(key, (None, 0))
            if last is not None and now - last < self.window:
                self._seen[key] = (last, held + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # templates are few; ids end up in args, not here
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {now - last:.0f} s not logged]"
        return True


def install_log_filters() -> None:
    """Route the AgentCore runtime's log through ours, once, and drop the library lines ours replace.

    ``BedrockAgentCoreApp`` gives its logger a handler of its own and also lets records
    propagate, so each of its lines was printed twice, in two formats.
    """
    runtime = logging.getLogger("bedrock_agentcore.app")
    for handler in list(runtime.handlers):
        runtime.removeHandler(handler)
    runtime.propagate = True
    for name, prefixes in {**DUPLICATE_LINES, **NOISE_LINES}.items():
        library = logging.getLogger(name)
        if not any(isinstance(f, DropLines) for f in library.filters):
            library.addFilter(DropLines(*prefixes))


def configure_logging(level: str, log_format: str = "text") -> None:
    """The process's one log handler (stderr), in ``LOG_FORMAT`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RateLimitRepeats())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per local-model call, without our ids
    install_log_filters()


#: ``get_config()`` keys under which a model may report its context size (providers name it differently)
CONTEXT_SIZE_KEYS = ("context_window", "context_size", "context_tokens", "n_ctx", "max_context_tokens")


def describe_model(config: Any) -> tuple[str, str]:
    """The model's id and context size (``?`` when it does not say), from ``model.get_config()``."""
    config = config if isinstance(config, dict) else {}
    params = config.get("params") if isinstance(config.get("params"), dict) else {}
    model_id = str(config.get("model_id") or "?")
    for source in (config, params):
        for key in CONTEXT_SIZE_KEYS:
            if isinstance(source.get(key), int):
                return model_id, f"{source[key]} tokens"
    return model_id, "?"


def log_start_up(settings: Settings, model_config: Any, host: str, port: int, max_connections: int,
                 telemetry: str = "off", malloc_arenas: str = "allocator default") -> None:
    """The one start-up line: where it serves, the store, the model and its context, the request limits, traces,
    the C allocator's arenas (``core.allocator``)."""
    model_id, context = describe_model(model_config)
    if context == "?" and settings.model_provider == "local":  # llama.cpp's slots, as the settings sized them
        context = f"{settings.local_model_context} tokens x {settings.local_model_parallel} slots"
    logger.info(
        "serving on http://%s:%d | store=<%s> | model=<%s> | context=<%s> | max_tokens=<%d> | "
        "limits: body %d bytes, %d waiting per session, %d turn threads, %d connections | telemetry=<%s> | "
        "malloc_arenas=<%s>",
        host, port, describe_store(settings), model_id,
        context, settings.max_tokens, settings.body_limit, settings.session_queue_max, settings.turn_workers,
        max_connections, telemetry, malloc_arenas,
    )
