"""A request, parsed: the payload and the ids checked, each problem named in a ``BadRequest`` (HTTP 400)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import BadRequest, int_field
from core.settings import Settings
from longterm import SearchRequest, off_reason, parse_search
from service.identity import header, resolve_actor_id, resolve_session_id

#: payload ``action`` values: operations run without the model (see ``Assistant.run_action``)
ACTIONS = ("summarize_session", "clear_session", "list_sessions", "get_history", "search_memory", "forget")
#: the actions on the actor's long-term memory (answered 400 when it is off for this server)
LONG_TERM_ACTIONS = ("search_memory", "forget")
#: the actions on the actor rather than one session: the session header / field is ignored, no session slot taken
ACTOR_ACTIONS = ("list_sessions", *LONG_TERM_ACTIONS)

#: ``list_sessions``' page size: default and largest
SESSIONS_PAGE = (20, 100)
#: ``get_history``'s page size: default and largest
HISTORY_PAGE = (50, 200)
#: largest ``before`` taken: JSON's largest safe integer (every store takes it; no session has that many turns)
MAX_TURN_NUMBER = 2**53 - 1

IDEMPOTENCY_HEADER = "idempotency-key"
#: an idempotency key: what UUIDs, ULIDs and base64 (plain or url-safe) keys are made of, 1-255 characters
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9\-_.:~+/=]{1,255}")
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class ChatRequest:
    message: str | None  # None only for an action
    actor_id: str
    #: "" for ``list_sessions``, which is about the actor, not a session
    session_id: str
    action: str | None = None
    stream: bool = False
    #: ``Idempotency-Key`` header or ``idempotency_key`` field: a retry with it stores nothing new
    idempotency_key: str | None = None
    #: ``explain``: the response carries a ``memory`` report of what was put in front of the model
    explain: bool = False
    #: page size of ``list_sessions`` / ``get_history``
    limit: int | None = None
    #: ``list_sessions``: the ``next_cursor`` of the page before
    cursor: str | None = None
    #: ``get_history``: turns numbered below this one (the ``next_before`` of the page before)
    before: int | None = None
    #: ``search_memory``: the query and how many records (checked by ``longterm.parse_search``)
    search: SearchRequest | None = None


def check_text(field: str, value: str) -> None:
    """Refuse text that cannot be stored or sent as UTF-8: a lone surrogate (``"\\ud800"``) parses from JSON fine."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRequest(f"'{field}' holds a lone surrogate ({value[e.start]!r} at character {e.start}), which is "
                         "not text; send valid Unicode") from e


def _page_size(payload: Mapping[str, object], sizes: tuple[int, int]) -> int:
    default, largest = sizes
    limit = int_field(payload, "limit", 1, largest, default, f"an integer from 1 to {largest}")
    assert limit is not None
    return limit


def _cursor(payload: Mapping[str, object]) -> str | None:
    """A string or null: whether the string is a cursor this server issued, the store says (``InvalidCursor``)."""
    cursor = payload.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise BadRequest(f"'cursor' must be a string (a 'next_cursor' this server gave) or null, "
                         f"got {type(cursor).__name__}")
    return cursor


def _before(payload: Mapping[str, object]) -> int | None:
    return int_field(payload, "before", 1, MAX_TURN_NUMBER, None, "a positive integer (a turn number) or null")


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


def long_term_off(action: str, settings: Settings) -> BadRequest:
    """The 400 of a long-term action on a server without long-term memory: why it is off and how to turn it on."""
    return BadRequest(f"'{action}' needs long-term memory, which is off on this server: {off_reason(settings)}")


def parse_action(action: object, payload: Mapping[str, object], session_id: str | None,
                 headers: Mapping[str, str] | None, settings: Settings, *, long_term: bool = True) -> ChatRequest:
    """An ``action`` request: the action's own fields checked; ``message``, ``stream`` and the key do not apply.

    ``long_term``: whether this server has long-term memory; without it ``search_memory`` and ``forget``
    are a 400 that says so (before their fields are checked: fixing them would not help).
    """
    if not isinstance(action, str) or action not in ACTIONS:
        raise BadRequest(f"unknown action {action!r}; known actions: {', '.join(ACTIONS)}")
    if action in LONG_TERM_ACTIONS and not long_term:
        raise long_term_off(action, settings)
    actor_id = resolve_actor_id(payload, headers)
    if action == "list_sessions":
        return ChatRequest(None, actor_id, "", action=action, limit=_page_size(payload, SESSIONS_PAGE),
                           cursor=_cursor(payload))
    if action == "search_memory":
        return ChatRequest(None, actor_id, "", action=action, search=parse_search(payload, settings.ltm_top_k))
    if action == "forget":
        return ChatRequest(None, actor_id, "", action=action)
    session = resolve_session_id(session_id, payload)
    if action == "get_history":
        return ChatRequest(None, actor_id, session, action=action, limit=_page_size(payload, HISTORY_PAGE),
                           before=_before(payload))
    return ChatRequest(None, actor_id, session, action=action)


def parse_request(payload: object, session_id: str | None, headers: Mapping[str, str] | None,
                  settings: Settings, *, long_term: bool = True) -> ChatRequest:
    """Check the payload and the ids; raise ``BadRequest`` saying exactly what is wrong.

    ``session_id``: the runtime's (the session header); a payload ``session_id`` must agree with it.
    ``long_term``: whether the server has long-term memory (``search_memory`` / ``forget`` are 400s without).
    """
    if not isinstance(payload, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(payload).__name__}")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be true or false, got {type(stream).__name__}")
    action = payload.get("action")
    if action is not None:
        return parse_action(action, payload, session_id, headers, settings, long_term=long_term)
    explain = payload.get("explain", False)
    if not isinstance(explain, bool):
        raise BadRequest(f"'explain' must be true or false, got {type(explain).__name__}")
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
