"""A request, parsed: the payload and the ids checked, each problem named in a ``BadRequest`` (HTTP 400).

A chat message is checked here; an action's own fields by its parser in the table of actions
(``service/actions.py``), through the field checks of ``service/parsing.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import BadRequest
from core.settings import Settings
from service.actions import ACTIONS, Action, action_named, long_term_off
from service.identity import header, resolve_actor_id, resolve_session_id
from service.parsing import bool_field, check_text

__all__ = ["ACTIONS", "ChatRequest", "check_text", "idempotency_key", "parse_request"]

IDEMPOTENCY_HEADER = "idempotency-key"
#: an idempotency key: what UUIDs, ULIDs and base64 (plain or url-safe) keys are made of, 1-255 characters
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9\-_.:~+/=]{1,255}")
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class ChatRequest:
    message: str | None  # None only for an action
    actor_id: str
    #: "" for an action on the actor (``list_sessions``, ``search_memory``, ``forget``), not one session
    session_id: str
    #: the action's table entry (``service/actions.py``); None: a chat turn
    action: Action | None = None
    #: the action's own fields, as its parser checked them
    fields: Any = None
    stream: bool = False
    #: ``Idempotency-Key`` header or ``idempotency_key`` field: a retry with it stores nothing new
    idempotency_key: str | None = None
    #: ``explain``: the response carries a ``memory`` report of what was put in front of the model
    explain: bool = False


def _check_key(where: str, key: object) -> str:
    if not isinstance(key, str):
        raise BadRequest(f"{where} must be a string, got {type(key).__name__}")
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"{where} must be 1 to {MAX_IDEMPOTENCY_KEY} characters long, got {len(key)}")
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequest(f"{where} may contain only letters, digits and - _ . : ~ + / = (a UUID, for example)")
    return key


def idempotency_key(payload: Mapping[str, object], headers: Mapping[str, str] | None) -> str | None:
    """The request's idempotency key: the ``Idempotency-Key`` header or the ``idempotency_key`` field.

    The header may be the IETF draft's structured-field string (``"abc"``, quoted) or bare (``abc``);
    both are the key ``abc``. Header and field both present and different: a 400.
    """
    from_header = header(headers, IDEMPOTENCY_HEADER)
    if from_header is not None:
        value = from_header.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        from_header = _check_key("the Idempotency-Key header", value)
    from_body = payload.get("idempotency_key")
    if from_body is not None:
        from_body = _check_key("'idempotency_key'", from_body)
    if from_header is not None and from_body is not None and from_header != from_body:
        raise BadRequest("the Idempotency-Key header and 'idempotency_key' in the body differ; send one of them, "
                         "or the same key")
    return from_body if from_body is not None else from_header


def parse_action(name: object, payload: Mapping[str, object], session_id: str | None,
                 headers: Mapping[str, str] | None, settings: Settings, *, long_term: bool = True) -> ChatRequest:
    """An ``action`` request: the action's own fields checked; ``message``, ``stream`` and the key do not apply.

    ``long_term``: whether this server has long-term memory; without it a long-term action is a 400
    that says so (before its fields are checked: fixing them would not help).
    """
    action = action_named(name)
    if action.long_term and not long_term:
        raise long_term_off(action.name, settings)
    actor_id = resolve_actor_id(payload, headers)
    fields = action.parse(payload, settings)
    session = resolve_session_id(session_id, payload) if action.per_session else ""
    return ChatRequest(None, actor_id, session, action=action, fields=fields)


def parse_request(payload: object, session_id: str | None, headers: Mapping[str, str] | None,
                  settings: Settings, *, long_term: bool = True) -> ChatRequest:
    """Check the payload and the ids; raise ``BadRequest`` saying exactly what is wrong.

    ``session_id``: the runtime's (the session header); a payload ``session_id`` must agree with it.
    ``long_term``: whether the server has long-term memory (``search_memory`` / ``forget`` are 400s without).
    """
    if not isinstance(payload, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(payload).__name__}")
    stream = bool_field(payload, "stream")
    action = payload.get("action")
    if action is not None:
        return parse_action(action, payload, session_id, headers, settings, long_term=long_term)
    explain = bool_field(payload, "explain")
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
        idempotency_key=idempotency_key(payload, headers),
        explain=explain,
    )
