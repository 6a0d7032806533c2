"""The AgentCore app: ``POST /invocations`` and ``GET /ping`` on port 8080. Wiring only.

Run with ``python agent.py`` (or ``make run``), or ``uvicorn agent:app``.
Settings come from the environment (see README); a wrong one stops start-up
with one line naming the variable.

Shutdown (SIGTERM, SIGINT, or the end of the app's lifespan) closes the assistant:
running turns finish, long-term memory's background writer drains its queue
(a clean shutdown loses no record of an acknowledged turn), the store closes.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bedrock_agentcore.runtime import BedrockAgentCoreApp
from bedrock_agentcore.runtime.context import RequestContext
from starlette.middleware import Middleware

import longterm
from core.allocator import limit_malloc_arenas
from core.errors import ConfigError
from core.settings import Settings
from core.telemetry import configure_telemetry, observe_queue, shutdown_telemetry
from memory import create_store, probe_store
from models import configure_model
from service import Assistant
from service.access import AccessPolicy, access_policy, log_access
from service.connections import check_bindable, uvicorn_options
from service.guard import RequestGuard
from service.logs import configure_logging, install_log_filters, log_start_up
from ui.web import mount_dev_ui, page_url

logger = logging.getLogger(__name__)

_assistant: Assistant | None = None
#: whether the app closes ``_assistant`` when its lifespan ends (it built it, or main() handed it over)
_owned = False


def build_assistant(settings: Settings | None = None) -> Assistant:
    """The store, long-term memory (per ``LONG_TERM_MEMORY`` and the backend; it logs one line) and the model."""
    settings = settings or Settings.from_env()
    longterm.check_settings(settings)  # MEMORY_BACKEND and LTM_BACKEND name backends: one line, nothing built yet
    store = create_store(settings)
    ltm = None
    try:
        # the model decides the defaults of its limits (MAX_TOKENS, MEMORY_MAX_TOKENS, ...): resolved with it
        settings, model = configure_model(settings)
        ltm = longterm.create_long_term(settings, store.name)
        return Assistant(settings, store, model, ltm)
    except BaseException:  # a refused setting (ConfigError) or an interrupt: release what was opened
        if ltm is not None:
            ltm.close()
        store.close()
        raise


def get_assistant() -> Assistant:
    global _assistant, _owned
    if _assistant is None:
        _assistant, _owned = build_assistant(), True
        probe_store(_assistant.store)
    return _assistant


def set_assistant(assistant: Assistant | None, *, owned: bool = False) -> None:
    """Install the assistant the entrypoint uses (tests and embedders).

    ``owned``: the app closes it when its lifespan ends (``main()``); otherwise the caller closes it.
    """
    global _assistant, _owned
    _assistant, _owned = assistant, owned and assistant is not None


def close_assistant() -> None:
    """Uninstall and close the installed assistant, if any: turns finish, long-term memory drains, the store closes."""
    assistant = _assistant
    set_assistant(None)
    if assistant is not None:
        assistant.close()


def request_limits() -> tuple[int, str]:
    """What the request guard needs per request: ``MAX_BODY_BYTES`` and the store's name (for its log line)."""
    assistant = get_assistant()
    return assistant.settings.body_limit, assistant.store.name


def request_access() -> AccessPolicy:
    """What the request guard checks of every request: a verified bearer token (AUTH_*), the page's Host/Origin."""
    return access_policy(get_assistant().settings)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Build (and validate) everything before the first request; at the end, close what this lifespan built.

    An assistant installed by ``set_assistant`` without ``owned`` (tests, embedders) is its installer's to close.
    """
    if not logging.getLogger().handlers:  # served by `uvicorn agent:app` (e.g. `agentcore dev`), not main()
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
    configure_telemetry()  # under opentelemetry-instrument, or with OTEL_EXPORTER_OTLP_ENDPOINT; else nothing
    assistant = get_assistant()  # build (and validate) everything before the first request
    access_policy(assistant.settings)  # AUTH_DISCOVERY_URL read now, not at the first request
    if assistant.settings.dev_ui:
        mount_dev_ui(app)  # the chat page on GET / (DEV_UI=on: `make run`; never unless asked)
    try:
        yield
    finally:  # uvicorn's shutdown (SIGTERM, SIGINT): after it, uvicorn re-raises SIGTERM, which ends the process
        if _owned and _assistant is assistant:
            close_assistant()
        shutdown_telemetry()  # the last batched spans, for at most a few seconds


def _folds_pending() -> int:
    return _assistant.folds.pending if _assistant is not None else 0


def _embeddings_pending() -> int:
    """Long-term records stored without their vector yet (the local store's backlog; 0 elsewhere)."""
    store = getattr(_assistant.ltm, "store", None) if _assistant is not None else None
    return store.count_unembedded() if hasattr(store, "count_unembedded") else 0


observe_queue("assistant.summary.folds_pending", "Rolling-summary folds waiting or running", _folds_pending)
observe_queue("assistant.longterm.backlog", "Long-term records waiting for their vector", _embeddings_pending)

app = BedrockAgentCoreApp(lifespan=lifespan, middleware=[Middleware(RequestGuard, limits=request_limits,
                                                                   access=request_access)])
install_log_filters()  # library lines go through our handler once; our request line replaces their duplicates


@app.entrypoint
async def invocations(payload: Any, context: RequestContext) -> Any:
    """The server's entrypoint: async, so a request waiting for its session holds no thread (``Assistant.serve``)."""
    return await get_assistant().serve(payload, context)


def chat_handler(payload: Any, context: RequestContext) -> Any:
    """Answer one message of one actor's session, with that session's memory, on the calling thread.

    The same request path as the server's entrypoint, for direct callers (tests, embedders);
    a streamed reply is an iterator of events.
    """
    return get_assistant().handle(payload, context)


def main() -> None:
    arenas = limit_malloc_arenas()  # before any thread allocates: each would keep an arena of its own
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
        server = uvicorn_options(settings)  # checks MAX_CONNECTIONS against the descriptor limit
        check_bindable(server["host"], server["port"])  # a taken or bad port before the model loads
        access = access_policy(settings)  # AUTH_DISCOVERY_URL fetched: an unreachable issuer is one line
        telemetry = configure_telemetry()  # before anything traced is built (docs/observability.md)
        # a store or model may refuse its settings too (a MEMORY_ID, MODEL_PROVIDER=local without a model file)
        assistant = build_assistant(settings)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        sys.exit(2)
    set_assistant(assistant, owned=True)  # closed at the lifespan's end: SIGTERM never returns from app.run
    # What start-up built (libraries, the model, the store) lives as long as the process: moved out of the
    # collector's sight, a full collection scans only what requests allocate instead of pausing every thread
    # for tens of milliseconds (the p99 of a turn: docs/benchmarks.md, benchmark 3)
    gc.freeze()
    log_access(access, server["host"])
    log_start_up(assistant.settings, assistant.model.get_config(), server["host"], server["port"],
                 server["http"].limits.max_connections, telemetry, arenas)
    probe_store(assistant.store)
    if settings.dev_ui:
        logger.info("DEV_UI=on | the chat page: %s", page_url(server["host"], server["port"]))
    try:
        app.run(**server)
    finally:  # a start-up failure, or SIGINT (KeyboardInterrupt): close it if the lifespan did not
        close_assistant()


if __name__ == "__main__":
    main()
