"""A small HTTP client of ``POST /invocations`` for the terminal chat: streamed turns and the session actions."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx

#: what the server accepts as an actor or session id
ID_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*")
#: a model may take a while to start writing; the connection itself must come up quickly
TIMEOUT = httpx.Timeout(300.0, connect=5.0)


class ServerError(Exception):
    """A request the server refused or failed (``status`` 0: it could not be reached)."""

    def __init__(self, status: int, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def is_unknown(self, word: str) -> bool:
        """A 400 naming ``word`` as unknown: the server lacks that action or field (an older server)."""
        return self.status == 400 and word in self.message and re.search(
            r"unknown|not allowed|unexpected", self.message, re.IGNORECASE) is not None

    def describe(self) -> str:
        """What to tell the user, by status."""
        if self.status == 0:
            return f"cannot reach the server: {self.message}"
        if self.status == 429:
            return f"this session is busy (another turn of it is running); try again in {self.retry_after or 'a few'} s"
        if self.status == 409:
            return f"conflict: {self.message}"
        if self.status == 502:
            return f"the model call failed: {self.message}"
        if self.status == 503:
            return f"unavailable for now: {self.message}; try again shortly"
        return f"{self.message} (HTTP {self.status})"


def new_session_id() -> str:
    """A fresh, readable session id: ``chat-<UTC minute>-<6 hex digits>``."""
    return f"chat-{time.strftime('%Y%m%d%H%M', time.gmtime())}-{secrets.token_hex(3)}"


def sse_events(lines: Iterator[str]) -> Iterator[Any]:
    """The ``data:`` payloads of a Server-Sent Events stream, parsed as JSON, one per event."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield json.loads("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield json.loads("\n".join(data))


def _error_of(response: httpx.Response) -> ServerError:
    try:
        message = str(response.json().get("error", "request failed"))
    except (ValueError, AttributeError):
        message = response.text.strip() or response.reason_phrase
    return ServerError(response.status_code, message, response.headers.get("Retry-After"))


class AssistantClient:
    """One actor's conversation with one server; ``session_id`` and ``actor_id`` may change between calls."""

    def __init__(self, url: str, actor_id: str, session_id: str, http: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.actor_id = actor_id
        self.session_id = session_id
        self.http = http or httpx.Client(timeout=TIMEOUT)

    def close(self) -> None:
        self.http.close()

    def _body(self, fields: dict[str, Any]) -> dict[str, Any]:
        return {"actor_id": self.actor_id, "session_id": self.session_id, **fields}

    def ping(self) -> None:
        """Raise ``ServerError`` unless the server answers ``/ping``."""
        try:
            response = self.http.get(f"{self.url}/ping", timeout=5.0)
        except httpx.HTTPError as e:
            raise ServerError(0, f"{self.url}: {e}") from e
        if response.status_code != 200:
            raise _error_of(response)

    def action(self, name: str, **fields: Any) -> dict[str, Any]:
        """A session action (``list_sessions``, ``get_history``, ``clear_session``...); its JSON answer."""
        try:
            response = self.http.post(f"{self.url}/invocations", json=self._body({"action": name, **fields}))
        except httpx.HTTPError as e:
            raise ServerError(0, str(e)) from e
        if response.status_code >= 400:
            raise _error_of(response)
        return response.json()

    def stream(self, message: str, explain: bool = False) -> Iterator[str | dict[str, Any]]:
        """One streamed turn: the reply's text deltas (``str``), then the final object (``dict``).

        A failure before the stream raises ``ServerError``; one during it is the final object's ``error``.
        Closing the iterator early hangs up, which cancels the turn (the server stores none of it).
        """
        body = self._body({"message": message, "stream": True, **({"explain": True} if explain else {})})
        try:
            with self.http.stream("POST", f"{self.url}/invocations", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_of(response)
                yield from sse_events(response.iter_lines())
        except httpx.HTTPError as e:
            raise ServerError(0, str(e)) from e
