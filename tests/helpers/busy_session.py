"""A session kept busy on purpose, for the UIs' 429 tests: one of its turns runs while the store is frozen.

The server under test keeps its sessions in a private Redis and lets no request wait for a busy session
(``SESSION_QUEUE_MAX=0``); a streamed turn answers 200 only once it holds its session, and then hangs on
the frozen Redis (its socket timeout is long), so any other request to that session gets a 429 at once.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.redis_server import RedisServer
from tests.helpers.server import Server


@contextmanager
def busy_capable_server(directory: Path, env: dict[str, str] | None = None) -> Iterator[tuple[Server, RedisServer]]:
    """A real server (echo model, chat page on) on a private Redis, with no queue for a busy session."""
    redis = RedisServer(directory / "redis").start()
    server = Server({"DEV_UI": "on", "MEMORY_BACKEND": "redis", "SESSION_QUEUE_MAX": "0", "LOG_LEVEL": "DEBUG",
                     "REDIS_URL": f"{redis.url}?socket_timeout=120", **(env or {})},
                    log_path=directory / "server.log")  # a failing test shows what the server saw
    try:
        server.start()
        yield server, redis
    finally:
        server.stop()
        redis.thaw()
        redis.stop()


@contextmanager
def busy_session(server: Server, redis: RedisServer, actor_id: str, session_id: str) -> Iterator[None]:
    """While the block runs, a turn of ``actor_id``'s ``session_id`` holds the session; it finishes afterwards."""
    redis.freeze()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=180)
    try:
        body = {"message": "a turn that holds the session", "stream": True, "actor_id": actor_id,
                "session_id": session_id}
        connection.request("POST", "/invocations", body=json.dumps(body),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()  # the 200 comes once the turn holds the session
        assert response.status == 200, response.read()
        yield
        redis.thaw()
        response.read()  # the held turn finishes (and is stored) before the test goes on
    finally:
        redis.thaw()
        connection.close()
