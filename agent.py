"""The AgentCore app: ``POST /invocations`` and ``GET /ping`` on port 8080. Wiring only.

Run with ``python agent.py`` (or ``make run``), or ``uvicorn agent:app``.
Settings come from the environment (see README); a wrong one stops start-up
with one line naming the variable.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bedrock_agentcore.runtime import BedrockAgentCoreApp
from bedrock_agentcore.runtime.context import RequestContext

from core.errors import ConfigError
from core.settings import Settings
from memory import create_store
from models import configure_model
from service import Assistant
from service.logs import configure_logging, install_log_filters

logger = logging.getLogger(__name__)

_assistant: Assistant | None = None


def build_assistant(settings: Settings | None = None) -> Assistant:
    settings = settings or Settings.from_env()
    store = create_store(settings)
    # the model decides the defaults of its limits (MAX_TOKENS, MEMORY_MAX_TOKENS, ...): resolved with it
    settings, model = configure_model(settings)
    return Assistant(settings, store, model)


def get_assistant() -> Assistant:
    global _assistant
    if _assistant is None:
        _assistant = build_assistant()
    return _assistant


def set_assistant(assistant: Assistant | None) -> None:
    """Install the assistant the entrypoint uses (tests and embedders)."""
    global _assistant
    _assistant = assistant


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    if not logging.getLogger().handlers:  # served by `uvicorn agent:app` (e.g. `agentcore dev`), not main()
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
    get_assistant()  # build (and validate) everything before the first request
    yield


app = BedrockAgentCoreApp(lifespan=lifespan)
install_log_filters()  # library lines go through our handler once; our request line replaces their duplicates


@app.entrypoint
def chat_handler(payload: Any, context: RequestContext) -> Any:
    """Answer one message of one actor's session, with that session's memory."""
    return get_assistant().handle(payload, context)


def main() -> None:
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
        # a store or model may refuse its settings too (a MEMORY_ID, MODEL_PROVIDER=local without a model file)
        set_assistant(build_assistant(settings))
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        sys.exit(2)
    # HOST unset: the runtime's choice (0.0.0.0 inside a container, where AgentCore must reach it; else 127.0.0.1)
    app.run(port=int(os.environ.get("PORT", "8080")), host=os.environ.get("HOST") or None,
            log_config=None)  # uvicorn's lines in our format too


if __name__ == "__main__":
    main()
