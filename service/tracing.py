"""The request's span: every turn and every action is one ``assistant.turn`` / ``assistant.action`` span.

A decorator on the pipeline's ``run`` and on ``run_action``, so the turn reads as it did; the span
carries the request id, the actor, the session (also as baggage, so every span under it - ours and
Strands' - gets ``session.id``: ``core/telemetry.py``) and the backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from bedrock_agentcore.runtime.context import BedrockAgentCoreContext

from core.telemetry import turn_span

F = TypeVar("F", bound=Callable[..., Any])


def traced_turn(method: F) -> F:
    """``TurnPipeline.run(request, state, ...)`` in an ``assistant.turn`` span."""
    @functools.wraps(method)
    def traced(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        with turn_span("assistant.turn", request_id=BedrockAgentCoreContext.get_request_id(),
                       actor_id=request.actor_id, session_id=request.session_id, backend=self.store.name):
            return method(self, request, *args, **kwargs)
    return traced  # type: ignore[return-value]


def traced_action(function: F) -> F:
    """``run_action(parts, action, actor_id, session_id, fields)`` in an ``assistant.action`` span."""
    @functools.wraps(function)
    def traced(parts: Any, action: Any, actor_id: str, session_id: str, *args: Any, **kwargs: Any) -> Any:
        with turn_span(f"assistant.action {action.name}", request_id=BedrockAgentCoreContext.get_request_id(),
                       actor_id=actor_id, session_id=session_id or None, backend=parts.store.name):
            return function(parts, action, actor_id, session_id, *args, **kwargs)
    return traced  # type: ignore[return-value]
