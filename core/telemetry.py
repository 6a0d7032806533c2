"""Traces and metrics of each turn, on AgentCore's terms: OpenTelemetry, grouped by ``session.id``.

Three deployments, one code path:

- **On the AgentCore runtime** the agent runs under ``opentelemetry-instrument`` with the AWS Distro
  (``aws-opentelemetry-distro``): the distro has configured the SDK before ``agent.py`` is imported.
  ``configure_telemetry`` only adds the processor that copies the turn's ``session.id`` baggage onto
  every span (Strands' spans included), which is how CloudWatch's GenAI Observability groups a
  conversation's traces.
- **Locally with a collector** (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
  set: Jaeger, Tempo, Langfuse, Phoenix, an OpenTelemetry Collector): an SDK provider with a batch
  processor exporting OTLP/HTTP protobuf from its own thread. No request waits on the exporter; a
  dead collector costs dropped spans and a rate-limited warning.
- **Otherwise** nothing is configured: the API's no-op tracer and meter, a few microseconds a turn.

Spans never carry message text: ids, counts, scores and timings only. The standard GenAI switch
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` is the one exception (see
``capture_content``); Strands' own spans follow Strands' switches (docs/observability.md).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import baggage, context, metrics, trace
from opentelemetry.trace import Span, Status, StatusCode

logger = logging.getLogger(__name__)

#: the attribute (and baggage entry) CloudWatch's GenAI Observability groups a conversation's traces by
SESSION_ID = "session.id"
#: the OpenTelemetry GenAI conventions' name for the same id
CONVERSATION_ID = "gen_ai.conversation.id"
#: turns on message text in our spans (the GenAI conventions' switch; off by default)
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
#: seconds a shutdown waits for the last spans to leave (the runtime's grace is short)
FLUSH_TIMEOUT_MS = 2_000

_tracer = trace.get_tracer("assistant.memory")
_meter = metrics.get_meter("assistant")

TURN_DURATION = _meter.create_histogram(
    "assistant.turn.duration", unit="s", description="A request's time in the service, by outcome")
MEMORY_DURATION = _meter.create_histogram(
    "assistant.memory.duration", unit="s", description="A memory operation's time, by operation and backend")
RECORDS_INJECTED = _meter.create_histogram(
    "assistant.longterm.records_injected", unit="{record}", description="Long-term records put in front of the model")
REFUSED = _meter.create_counter(
    "assistant.requests.refused", unit="{request}", description="Requests answered 429 (session busy) or 503 (store down)")

#: the providers this module installed (shut down by ``shutdown_telemetry``)
_installed: list[Any] = []
#: ids of the tracer providers that already copy ``session.id`` from the baggage onto every span
_with_session_baggage: set[int] = set()


def capture_content() -> bool:
    """Whether message text may go into our spans (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``)."""
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("true", "1", "on")


def exporter_configured() -> bool:
    return any(os.environ.get(name, "").strip() for name in ENDPOINT_ENVS) and \
        os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


def _session_baggage_processor() -> Any:
    from opentelemetry.processor.baggage import BaggageSpanProcessor

    return BaggageSpanProcessor(lambda key: key == SESSION_ID)


def configure_telemetry() -> str:
    """Set up what this process exports; return how (for the start-up line). Safe to call more than once."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):  # opentelemetry-instrument (ADOT) configured it, or an earlier call
        if id(provider) not in _with_session_baggage:
            provider.add_span_processor(_session_baggage_processor())
            _with_session_baggage.add(id(provider))
        return "opentelemetry (configured by the environment)" if provider not in _installed else "otlp"
    if not exporter_configured():
        return "off (no OTEL_EXPORTER_OTLP_ENDPOINT)"
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "agentcore-session-assistant"})
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # see shutdown_telemetry
    tracer_provider.add_span_processor(_session_baggage_processor())
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _with_session_baggage.add(id(tracer_provider))
    trace.set_tracer_provider(tracer_provider)
    meter_provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())],
                                   shutdown_on_exit=False)
    metrics.set_meter_provider(meter_provider)
    _installed.extend([tracer_provider, meter_provider])
    return "otlp"


def shutdown_telemetry(timeout_ms: int = FLUSH_TIMEOUT_MS) -> None:
    """Send what is batched and stop the exporters this module started, for at most ``timeout_ms`` in all.

    The SDK's own shutdown joins its export thread, which may be inside a call to a dead or stalled
    collector (up to ``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s): it runs on a daemon thread here, and what is
    not sent by the deadline is dropped with one warning, so a collector never holds the process's exit.
    """
    providers = list(_installed)
    _installed.clear()
    if not providers:
        return

    def close() -> None:
        for provider in providers:
            try:
                provider.force_flush(timeout_ms)
                provider.shutdown()
            except Exception as e:
                logger.warning("telemetry: shutdown of %s failed: %s: %s", type(provider).__name__,
                               type(e).__name__, e)

    closing = threading.Thread(target=close, name="telemetry-shutdown", daemon=True)
    closing.start()
    closing.join(timeout_ms / 1e3)
    if closing.is_alive():
        logger.warning("telemetry: the collector did not take the last spans within %.1f s; they are dropped",
                       timeout_ms / 1e3)


def record_injected(count: int) -> None:
    """Long-term records put in front of the model by one turn (a histogram)."""
    RECORDS_INJECTED.record(count)


@contextmanager
def turn_span(name: str, *, request_id: str | None, actor_id: str | None, session_id: str | None,
              backend: str) -> Iterator[Span]:
    """The span of one request; its ``session.id`` also goes into the baggage, so every span under it carries it."""
    attributes: dict[str, Any] = {"memory.backend": backend}
    for key, value in (("request.id", request_id), ("actor.id", actor_id), (SESSION_ID, session_id),
                       (CONVERSATION_ID, session_id)):
        if value:
            attributes[key] = value
    token = context.attach(baggage.set_baggage(SESSION_ID, session_id)) if session_id else None
    try:
        with _tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span
    finally:
        if token is not None:
            context.detach(token)


@contextmanager
def memory_span(operation: str, backend: str | None = None, **attributes: Any) -> Iterator[Span]:
    """A child span ``memory.<operation>`` (and its duration metric); an error marks it and names the backend."""
    session_id = baggage.get_baggage(SESSION_ID)
    fields = {"memory.operation": operation, **{k: v for k, v in attributes.items() if v is not None}}
    if backend:
        fields["memory.backend"] = backend
    if session_id:
        fields[SESSION_ID] = str(session_id)
    started = time.perf_counter()
    with _tracer.start_as_current_span(f"memory.{operation}", attributes=fields,
                                       record_exception=False, set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException as e:
            span.set_status(Status(StatusCode.ERROR, f"{type(e).__name__} (store {backend})" if backend else type(e).__name__))
            span.set_attribute("error.type", type(e).__name__)
            raise
        finally:
            MEMORY_DURATION.record(time.perf_counter() - started,
                                   {"memory.operation": operation, "memory.backend": backend or ""})


F = TypeVar("F", bound=Callable[..., Any])


def memory_step(operation: str, describe: Callable[[Any], dict[str, Any]] | None = None,
                backend: Callable[[Any], str | None] | None = None) -> Callable[[F], F]:
    """A method traced as ``memory.<operation>``: ``describe(self)`` adds what it did once it returns.

    A decorator, so the step's own code stays as it reads; ``describe`` is only called for a span
    that records (an exporter is configured), so an untraced turn pays for none of it.
    """
    def decorate(method: F) -> F:
        @functools.wraps(method)
        def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
            with memory_span(operation, backend(self) if backend is not None else None) as span:
                queued = _QUEUED_MS.get()
                if queued is not None:
                    span.set_attribute("memory.queued_ms", queued)
                    _QUEUED_MS.set(None)
                result = method(self, *args, **kwargs)
                if describe is not None and span.is_recording():
                    span.set_attributes({k: v for k, v in describe(self).items() if v is not None})
                return result
        return traced  # type: ignore[return-value]
    return decorate


#: how long the job now running waited in its queue (set by ``in_this_context``, read by ``memory_step``)
_QUEUED_MS: contextvars.ContextVar[float | None] = contextvars.ContextVar("memory_queued_ms", default=None)


def in_this_context(job: Callable[[], None]) -> Callable[[], None]:
    """``job`` to run later on another thread (a queued fold) as a child of the current span, with its wait.

    The job runs in a copy of this thread's context (the trace and the ``session.id`` baggage), and the
    span it opens says how long it was queued (``memory.queued_ms``).
    """
    context = contextvars.copy_context()
    queued = time.monotonic()

    def run() -> None:
        def waited() -> None:
            _QUEUED_MS.set(round((time.monotonic() - queued) * 1e3, 1))
            job()
        context.run(waited)
    return run


def observe_queue(name: str, description: str, depth: Callable[[], int]) -> None:
    """A gauge of a background queue's depth (the summary folds, long-term memory's embedding backlog)."""
    def read(_options: Any) -> Iterator[metrics.Observation]:
        try:
            yield metrics.Observation(depth())
        except Exception:  # a closed queue: nothing to report
            return

    _meter.create_observable_gauge(name, callbacks=[read], unit="{item}", description=description)


def record_request(status: int, seconds: float) -> None:
    """A request's end (its one log line): its duration by status, and the refusals (429 busy, 503 store down)."""
    TURN_DURATION.record(seconds, {"http.response.status_code": status})
    if status in (429, 503):
        REFUSED.add(1, {"http.response.status_code": status})
