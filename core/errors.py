"""Every error the assistant maps to an HTTP status lives here.

The entrypoint catches ``AssistantError`` once, at the boundary, and turns it
into a JSON body; nothing below it logs and re-raises the same failure.
"""

from __future__ import annotations


class AssistantError(Exception):
    """Base class: an error with an HTTP status and a message safe to show the caller."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.message}


class ConfigError(AssistantError):
    """A setting in the environment is wrong; raised at start-up."""


class BadRequest(AssistantError):
    """The caller sent something we refuse (HTTP 400)."""

    status = 400


class Unauthorized(AssistantError):
    """The caller's credentials are missing, unreadable or not valid (HTTP 401)."""

    status = 401


class Forbidden(AssistantError):
    """The caller asked for an identity its token does not grant (HTTP 403)."""

    status = 403


class NoCredentials(Unauthorized):
    """No bearer token where this server needs one (HTTP 401, a challenge without an error code: RFC 6750)."""


class IdentityProviderUnavailable(AssistantError):
    """The token issuer's keys (its JWKS) cannot be fetched right now, so no token can be checked (HTTP 503)."""

    status = 503


class PayloadTooLarge(AssistantError):
    """The request body is longer than ``MAX_BODY_BYTES`` (HTTP 413); refused before it is read whole."""

    status = 413


class SessionBusy(AssistantError):
    """The session already has a turn running and ``SESSION_QUEUE_MAX`` requests waiting (HTTP 429).

    ``retry_after`` (whole seconds, at least 1) goes into the ``Retry-After`` header.
    """

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClientGone(AssistantError):
    """The client hung up before its request was answered (logged as 499, as nginx does; nobody reads the body)."""

    status = 499


class StoreUnavailable(AssistantError):
    """The session store cannot be reached or written right now (HTTP 503)."""

    status = 503

    def __init__(self, store: str, detail: str) -> None:
        super().__init__(f"session store '{store}' is unavailable: {detail}")
        self.store = store


class InternalError(AssistantError):
    """A bug: the caller gets the request id to quote, never the internals (the log has the traceback)."""

    def __init__(self, request_id: str | None) -> None:
        super().__init__(f"internal error (request id {request_id}); the server log has the details")


class ModelError(AssistantError):
    """The model call failed (HTTP 502, or 503 when throttled / unavailable)."""

    status = 502

    def __init__(self, detail: str, *, status: int = 502) -> None:
        super().__init__(f"model call failed: {detail}")
        self.status = status


class InvalidCursor(BadRequest):
    """A ``list_sessions`` cursor this server did not issue (garbled, truncated, from elsewhere): HTTP 400."""


class SessionChanged(AssistantError):
    """The session was cleared (its generation moved on) while this turn was running: HTTP 409, nothing stored."""

    status = 409

    def __init__(self, message: str = "the conversation was cleared while this turn was running; nothing was stored"
                 ) -> None:
        super().__init__(message)


class DatabaseFileChanged(Exception):
    """The SQLite file a store opened was deleted or replaced (or can no longer be stat'ed) while serving.

    Raised by ``core.sqlite`` before a write transaction writes anything. Not an ``AssistantError``: each
    store maps it to its own 503 (``StoreUnavailable``, ``LongTermUnavailable``), which names the store.
    """


class AlreadyStored(Exception):
    """A turn with this idempotency key is already stored: the retry stored nothing.

    Not an HTTP error (deliberately not an ``AssistantError``): the service catches it and answers
    the retry with the original ``reply`` and ``message_count``, as the first attempt would have.
    """

    def __init__(self, message_count: int, reply: str) -> None:
        super().__init__(f"a turn with this idempotency key is already stored (turn {message_count})")
        self.message_count = message_count
        self.reply = reply
class LongTermUnavailable(AssistantError):
    """The long-term memory store cannot be read or written right now (HTTP 503)."""

    status = 503
