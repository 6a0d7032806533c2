"""In front of every request: who may send it; for ``POST /invocations``, the body's size and shape, and whether the
client is still there.

``RequestGuard`` is a small pure-ASGI middleware on the runtime's app. First, for every request, the
``AccessPolicy`` (``service.access``): a bearer token verified when ``AUTH_*`` is set (401), and with the
chat page on, no other site's ``Host`` or page (403). Then, for ``POST /invocations``: the runtime reads
the whole body (``await request.json()``) before our handler runs and catches only
``JSONDecodeError`` / ``UnicodeDecodeError`` there; so, before it:

- a body longer than ``MAX_BODY_BYTES`` is refused with a 413, by its ``Content-Length``
  or, for a chunked body, as soon as the bytes that arrived pass the limit (never buffered whole);
- a body the runtime's parser would crash on (JSON nested thousands of levels deep, a
  5,000-digit integer) is refused with a 400 naming the problem, not a plain-text 500;
- a request id header with characters outside ``[A-Za-z0-9-_.:%]`` is escaped, so every
  log line that carries it stays unforgeable.

The body, once read, is replayed to the runtime. Then the guard keeps listening for the
client's disconnect, which Starlette never reports to a handler that is not streaming: a
``ClientWatch`` in ``scope["state"]`` tells the handler (from any thread) when its client
has hung up, so a request waiting for its session can leave the queue and a streamed turn
can stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bedrock_agentcore.runtime.models import REQUEST_ID_HEADER, SESSION_HEADER
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import AssistantError, BadRequest, NoCredentials, PayloadTooLarge, Unauthorized
from service.access import AccessPolicy
from service.logs import RequestLine, safe_id

logger = logging.getLogger(__name__)

#: where the guard leaves a request's ``ClientWatch``: ``scope["state"][WATCH_KEY]``
WATCH_KEY = "client_watch"
#: deepest JSON nesting accepted in a body (the payload is one flat object; the parser recurses)
MAX_JSON_DEPTH = 32
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode("latin-1")
_SESSION = SESSION_HEADER.lower().encode("latin-1")


class ClientWatch:
    """Whether one request's HTTP client is still connected; callbacks run once, on any thread, when it leaves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gone = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def gone(self) -> bool:
        return self._gone

    def on_gone(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the client hangs up (at once if it already has)."""
        with self._lock:
            if not self._gone:
                self._callbacks.append(callback)
                return
        callback()

    def set_gone(self) -> None:
        with self._lock:
            if self._gone:
                return
            self._gone = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one callback's bug must not keep the others from running
                logger.exception("a client-gone callback failed")


def client_watch(context: Any) -> ClientWatch | None:
    """The ``ClientWatch`` the guard left for the request behind a runtime ``RequestContext`` (None without one)."""
    scope = getattr(getattr(context, "request", None), "scope", None)
    state = scope.get("state") if isinstance(scope, dict) else None
    watch = state.get(WATCH_KEY) if isinstance(state, dict) else None
    return watch if isinstance(watch, ClientWatch) else None


def json_problem(body: bytes) -> str | None:
    """Why this body would crash a JSON parser (a ``BadRequest`` message), else None.

    Bodies that are simply not JSON (or not UTF-8) are left to the runtime, which answers
    those with its own 400; only what it does not catch is named here.
    """
    try:
        value = json.loads(body)
    except RecursionError:
        return f"the request body nests JSON too deeply (the limit is {MAX_JSON_DEPTH} levels)"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    except ValueError as e:  # e.g. an integer longer than Python converts (4,300 digits)
        if "integer string conversion" in str(e):
            return "the request body holds an integer with more than 4300 digits"
        return f"the request body is not usable JSON: {e}"
    if nesting_depth(value) > MAX_JSON_DEPTH:
        return f"the request body nests JSON too deeply (the limit is {MAX_JSON_DEPTH} levels)"
    return None


def nesting_depth(value: object) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iteratively: no recursion to exhaust)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _declared_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:  # h11 refuses such a request before it gets here
        return None


def _safe_request_id(scope: Scope) -> str:
    """The request id header, %-escaped in place when it has characters a log line could be forged with."""
    raw = _header(scope, _REQUEST_ID)
    if raw is None:
        return str(uuid.uuid4())  # what the runtime does; this one names a request the runtime never sees
    escaped = safe_id(raw)
    if escaped != raw:
        scope["headers"] = [(k, escaped.encode("latin-1")) if k.lower() == _REQUEST_ID else (k, v)
                            for k, v in scope["headers"]]
    return escaped


def refusal_response(error: AssistantError) -> JSONResponse:
    """The JSON answer to a refused request; a 401 says how to authenticate (RFC 6750), and the connection closes."""
    headers = {"connection": "close"}  # the rest of a refused body is not worth reading
    if isinstance(error, Unauthorized):
        detail = error.message.replace("\\", "").replace('"', "'")
        headers["WWW-Authenticate"] = ('Bearer' if isinstance(error, NoCredentials)
                                       else f'Bearer error="invalid_token", error_description="{detail}"')
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


class RequestGuard:
    """Pure ASGI middleware: who may ask (every request); body limit, safe JSON, a watched client (``/invocations``).

    ``limits()`` returns the current ``(MAX_BODY_BYTES, store backend name)`` and ``access()`` the
    ``AccessPolicy``; both are asked per request because the app (and its middleware) exists before
    the settings are read. Without ``access`` nothing is refused for who sent it.
    """

    def __init__(self, app: ASGIApp, limits: Callable[[], tuple[int, str]],
                 access: Callable[[], AccessPolicy] | None = None) -> None:
        self.app = app
        self.limits = limits
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        invocation = scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/invocations"
        if not invocation:
            if scope["type"] in ("http", "websocket") and not await self._admitted(scope, receive, send):
                return
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _safe_request_id(scope)
        max_bytes, backend = self.limits()
        line = RequestLine(request_id, None, _header(scope, _SESSION), backend, started, {})
        refused = await self.access().refusal(scope) if self.access is not None else None
        if refused is not None:
            line.log(refused.status, refused.message)
            await refusal_response(refused)(scope, receive, send)
            return
        try:
            body = await self._read_body(scope, receive, max_bytes)
            if body is None:
                line.log(499, "client hung up before its request body arrived")
                return
            problem = json_problem(body)
            if problem is not None:
                raise BadRequest(problem)
        except AssistantError as e:
            line.log(e.status, e.message)
            await refusal_response(e)(scope, receive, send)
            return
        await self._forward(scope, receive, send, body)

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Whether the access policy lets this request (not ``POST /invocations``) through; if not, it is answered."""
        refused = await self.access().refusal(scope) if self.access is not None else None
        if refused is None:
            return True
        logger.warning("refused %s %r with %d: %s", scope.get("method", "WEBSOCKET"), scope["path"][:200],
                       refused.status, refused.message)
        if scope["type"] == "websocket":  # closed before it is accepted: the client sees a 403
            await send({"type": "websocket.close", "code": 1008})
        else:
            await refusal_response(refused)(scope, receive, send)
        return False

    @staticmethod
    async def _read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes | None:
        """The whole body, or None when the client left; ``PayloadTooLarge`` as soon as it passes ``max_bytes``."""
        declared = _declared_length(scope)
        if declared is not None and declared > max_bytes:
            raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {max_bytes} (MAX_BODY_BYTES)")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"the request body is over {max_bytes} bytes, the limit (MAX_BODY_BYTES)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        """Run the app on the body read, with a ``ClientWatch`` fed by listening for the client's disconnect."""
        watch = ClientWatch()
        state = scope.get("state")
        if not isinstance(state, dict):
            state = scope["state"] = {}
        state[WATCH_KEY] = watch
        left = asyncio.Event()  # the connection ended: hung up, or the response was sent
        delivered = False
        answered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await left.wait()
            return {"type": "http.disconnect"}

        async def tracked_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not answered:
                watch.set_gone()
            left.set()

        listener = asyncio.create_task(listen())
        try:
            await self.app(scope, replay, tracked_send)
        finally:
            listener.cancel()
