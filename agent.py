"""The AgentCore app: ``POST /invocations`` and ``GET /ping`` on port 8080. Wiring only.

Run with ``python agent.py`` (or ``make run``), or ``uvicorn agent:app``.
Settings come from the environment (see README); a wrong one stops start-up
with one line naming the variable.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bedrock_agentcore.runtime import BedrockAgentCoreApp
from bedrock_agentcore.runtime.context import RequestContext
from starlette.middleware import Middleware

from core.errors import ConfigError
from core.settings import Settings
from memory import create_store
from models import create_model
from service import Assistant
from service.connections import check_bindable, uvicorn_options
from service.guard import RequestGuard
from service.logs import configure_logging, install_log_filters, log_start_up

logger = logging.getLogger(__name__)

_assistant: Assistant | None = None


def build_assistant(settings: Settings | None = None) -> Assistant:
    settings = settings or Settings.from_env()
    return Assistant(settings, create_store(settings), create_model(settings))


def get_assistant() -> Assistant:
    global _assistant
    if _assistant is None:
        _assistant = build_assistant()
        _assistant.probe_store()
    return _assistant


def set_assistant(assistant: Assistant | None) -> None:
    """Install the assistant the entrypoint uses (tests and embedders)."""
    global _assistant
    _assistant = assistant


def request_limits() -> tuple[int, str]:
    """What the request guard needs per request: ``MAX_BODY_BYTES`` and the store's name (for its log line)."""
    assistant = get_assistant()
    return assistant.settings.body_limit, assistant.store.name


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    if not logging.getLogger().handlers:  # served by `uvicorn agent:app` (e.g. `agentcore dev`), not main()
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
    get_assistant()  # build (and validate) everything before the first request
    yield


app = BedrockAgentCoreApp(lifespan=lifespan, middleware=[Middleware(RequestGuard, limits=request_limits)])
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
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
        server = uvicorn_options(settings)  # checks MAX_CONNECTIONS against the descriptor limit
        check_bindable(server["host"], server["port"])  # a taken or bad port before the model loads
        # a store or model may refuse its settings too (a MEMORY_ID, MODEL_PROVIDER=local without a model file)
        assistant = build_assistant(settings)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        sys.exit(2)
    set_assistant(assistant)
    log_start_up(settings, assistant.model.get_config(), server["host"], server["port"],
                 server["http"].limits.max_connections)
    assistant.probe_store()
    app.run(**server)


if __name__ == "__main__":
    main()
