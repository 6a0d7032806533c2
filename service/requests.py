"""A request, parsed: the payload and the ids checked, each problem named in a ``BadRequest`` (HTTP 400)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import BadRequest
from core.settings import Settings
from service.identity import resolve_actor_id, resolve_session_id

#: payload ``action`` values: session operations run without the model (see ``Assistant.run_action``)
ACTIONS = ("summarize_session", "clear_session")


@dataclass(frozen=True)
class ChatRequest:
    message: str | None  # None only for an action
    actor_id: str
    session_id: str
    action: str | None = None
    stream: bool = False


def check_text(field: str, value: str) -> None:
    """Refuse text that cannot be stored or sent as UTF-8: a lone surrogate (``"\\ud800"``) parses from JSON fine."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRequest(f"'{field}' holds a lone surrogate ({value[e.start]!r} at character {e.start}), which is "
                         "not text; send valid Unicode") from e


def parse_request(payload: object, session_id: str | None, headers: Mapping[str, str] | None,
                  settings: Settings) -> ChatRequest:
    """Check the payload and the ids; raise ``BadRequest`` saying exactly what is wrong.

    ``session_id``: the runtime's (the session header); a payload ``session_id`` must agree with it.
    """
    if not isinstance(payload, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(payload).__name__}")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be true or false, got {type(stream).__name__}")
    action = payload.get("action")
    if action is not None:
        if not isinstance(action, str) or action not in ACTIONS:
            raise BadRequest(f"unknown action {action!r}; known actions: {', '.join(ACTIONS)}")
        return ChatRequest(None, resolve_actor_id(payload, headers), resolve_session_id(session_id, payload),
                           action=action)
    message = payload.get("message")
    prompt = payload.get("prompt")
    for field, text in (("message", message), ("prompt", prompt)):
        if isinstance(text, str):
            check_text(field, text)
    if message is not None and prompt is not None and message != prompt:
        raise BadRequest("'message' and 'prompt' are the same field; send one of them")
    if message is None:
        message = prompt
    if message is None:
        raise BadRequest("'message' is required")
    if not isinstance(message, str):
        raise BadRequest(f"'message' must be a string, got {type(message).__name__}")
    if not message.strip():
        raise BadRequest("'message' must not be empty")
    if len(message) > settings.max_message_chars:
        raise BadRequest(
            f"'message' is {len(message)} characters long; the limit is {settings.max_message_chars} "
            "(MAX_MESSAGE_CHARS)"
        )
    return ChatRequest(
        message=message,
        actor_id=resolve_actor_id(payload, headers),
        session_id=resolve_session_id(session_id, payload),
        stream=stream,
    )
