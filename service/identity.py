"""Who is asking, and about which conversation: ids from the request, validated.

An id that does not match AgentCore Memory's own pattern is refused with a 400,
never mapped to some other key: the caller either gets exactly the session it
named or an error.

The token's ``sub`` is the actor when a bearer JWT comes with the request, and a
payload or header actor that disagrees is refused (403). Its signature is checked
in front of us, never here: on the AgentCore runtime by its JWT authorizer (which
forwards the ``Authorization`` header), self-hosted by ``service.auth`` when
``AUTH_DISCOVERY_URL`` is set (``RequestGuard`` refuses the request with a 401
before it gets here). With neither (local development, or ``AUTH_*`` unset),
the token and the payload / header actor are trusted input.

A payload ``actor_id`` and an actor header that disagree are a 400, as for sessions:
one request names one actor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import jwt

from core.errors import BadRequest, Forbidden, Unauthorized

ID_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]*")
MAX_SESSION_ID = 100
MAX_ACTOR_ID = 255
DEFAULT_SESSION_ID = "default"
DEFAULT_ACTOR_ID = "default_user"
ACTOR_HEADER = "x-amzn-bedrock-agentcore-runtime-custom-actor-id"
SESSION_HEADER = "x-amzn-bedrock-agentcore-runtime-session-id"
#: headers that name who is asking about what (and which request a retry repeats): sent twice with
#: different values, which one counts is up to each library on the way (the runtime takes the first
#: session header but the last Authorization), so the request is refused instead
SINGLE_VALUED_HEADERS = ("authorization", ACTOR_HEADER, SESSION_HEADER, "idempotency-key")


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


def check_single_valued(values_of: Callable[[str], list[str]]) -> None:
    """Refuse a request that sends an identity header twice with different values (``values_of``: ``getlist``)."""
    for name in SINGLE_VALUED_HEADERS:
        values = values_of(name)
        if len(set(values)) > 1:
            raise BadRequest(f"the header {name!r} was sent {len(values)} times with different values; send it once")


def resolve_session_id(context_session_id: str | None, payload: Mapping[str, object] | None = None) -> str:
    """Payload ``session_id`` or the session header (both: they must agree), else ``default``."""
    from_header = None
    if context_session_id is not None and context_session_id != "":
        from_header = validate_id("session id", context_session_id, MAX_SESSION_ID)
    claimed = None
    if payload is not None and payload.get("session_id") is not None:
        claimed = validate_id("session_id", payload["session_id"], MAX_SESSION_ID)
    if from_header is not None and claimed is not None and claimed != from_header:
        raise BadRequest("'session_id' in the body and the session header differ; send one of them, or the same id")
    return claimed or from_header or DEFAULT_SESSION_ID


def bearer_subject(headers: Mapping[str, str] | None) -> str | None:
    """The ``sub`` claim of a bearer JWT, or None when no bearer token was sent.

    The signature is not checked here: the AgentCore runtime's JWT authorizer, or
    ``service.auth`` in ``RequestGuard`` (``AUTH_*``), already did, in front of us.
    """
    value = header(headers, "authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None  # e.g. SigV4: not an end-user identity
    try:
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise Unauthorized(f"the Authorization bearer token is not a readable JWT: {e}") from e
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("the bearer token has no 'sub' claim")
    if len(subject) > MAX_ACTOR_ID or not ID_PATTERN.fullmatch(subject):
        raise Forbidden("the bearer token's 'sub' is not a usable actor id ([a-zA-Z0-9][a-zA-Z0-9-_]*, <= 255)")
    return subject


def resolve_actor_id(payload: Mapping[str, object], headers: Mapping[str, str] | None) -> str:
    """The token's ``sub`` when a bearer JWT is present; else payload ``actor_id`` or the actor header (both: they
    must agree), else ``default_user``."""
    claimed: str | None = None
    if "actor_id" in payload and payload["actor_id"] is not None:
        claimed = validate_id("actor_id", payload["actor_id"], MAX_ACTOR_ID)
    from_header = header(headers, ACTOR_HEADER)
    if from_header is not None:
        from_header = validate_id("actor id header", from_header, MAX_ACTOR_ID)
        if claimed is not None and claimed != from_header:
            raise BadRequest("'actor_id' in the body and the actor header differ; send one of them, or the same id")
        claimed = from_header
    subject = bearer_subject(headers)
    if subject is not None:
        if claimed is not None and claimed != subject:
            raise Forbidden("the requested actor does not match the authenticated user (the token's 'sub')")
        return subject
    return claimed if claimed is not None else DEFAULT_ACTOR_ID
