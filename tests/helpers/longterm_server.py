"""Shared by the tests that run long-term memory in real server processes (SQLite and PostgreSQL replicas)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.helpers.server import Server

FACT = "Remember this: my daughter's name is Ingrid and she plays the cello"
QUESTION = "What instrument does my daughter play?"


def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """``check()``'s first truthy value, polled until ``timeout``: records are written by a background thread, a
    moment after the answer."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def say(server: Server, session: str, message: str, actor: str = "alice", **extra: Any) -> dict:
    status, body = server.invoke({"message": message, "actor_id": actor, **extra}, session)
    assert status == 200, body
    return body


def search(server: Server, query: str, actor: str = "alice", top_k: int = 10) -> list[dict]:
    status, body = server.invoke({"action": "search_memory", "query": query, "actor_id": actor, "top_k": top_k})
    assert status == 200, body
    return body["memories"]
