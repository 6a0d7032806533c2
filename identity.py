"""Who is asking, and about which conversation: ids from the request, validated.

An id that does not match AgentCore Memory's own pattern is refused with a 400,
never mapped to some other key: the caller either gets exactly the session it
named or an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from errors import BadRequest

ID_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]*")
MAX_SESSION_ID = 100
MAX_ACTOR_ID = 255
DEFAULT_SESSION_ID = "default"
DEFAULT_ACTOR_ID = "default_user"
ACTOR_HEADER = "x-amzn-bedrock-agentcore-runtime-custom-actor-id"


def validate_id(kind: str, value: object, max_length: int) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{kind} must be a string, got {type(value).__name__}")
    if not value:
        raise BadRequest(f"{kind} must not be empty")
    if len(value) > max_length:
        raise BadRequest(f"{kind} is {len(value)} characters long; the limit is {max_length}")
    if not ID_PATTERN.fullmatch(value):
        raise BadRequest(
            f"{kind} may contain only letters, digits, '-' and '_', and must start with a letter or digit"
        )
    return value


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Look a header up by name, whatever its case (HTTP/1.1 keeps case, the runtime may not)."""
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def resolve_session_id(context_session_id: str | None) -> str:
    if context_session_id is None or context_session_id == "":
        return DEFAULT_SESSION_ID
    return validate_id("session id", context_session_id, MAX_SESSION_ID)


def resolve_actor_id(payload: Mapping[str, object], headers: Mapping[str, str] | None) -> str:
    """Payload ``actor_id``, else the custom actor header, else ``default_user``."""
    if "actor_id" in payload and payload["actor_id"] is not None:
        return validate_id("actor_id", payload["actor_id"], MAX_ACTOR_ID)
    from_header = header(headers, ACTOR_HEADER)
    if from_header is not None:
        return validate_id("actor id header", from_header, MAX_ACTOR_ID)
    return DEFAULT_ACTOR_ID
