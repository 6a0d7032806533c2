"""Helpers for load and fault tests against the real server: keep-alive clients, threads, a log reader, history checks."""

from __future__ import annotations

import http.client
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bedrock_agentcore.memory.constants import MessageRole

from memory.base import SessionStore, StoredEvent
from tests.helpers.server import SESSION_HEADER, Server


def echo(question: str) -> str:
    """What the echo model (``MODEL_PROVIDER=echo``, ``ScriptedModel(echo=True)``) answers."""
    return f"You said '{question}'"


class LogDrain:
    """Reads the server's log (stderr) as it comes, so a busy server never blocks on a full pipe."""

    def __init__(self, server: Server, keep: int = 20_000) -> None:
        assert server.process is not None and server.process.stderr is not None
        self.lines: deque[str] = deque(maxlen=keep)
        self._stream = server.process.stderr
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._stream:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
        except (ValueError, OSError):  # the pipe was closed by Server.stop()
            pass

    def wait_closed(self, timeout: float = 10.0) -> list[str]:
        """Every line, once the server has exited (its end of the pipe is closed)."""
        self._thread.join(timeout)
        return list(self.lines)


class Client:
    """One keep-alive HTTP connection to the server; use one per thread."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def post(self, body: Any, session: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if session is not None:
            all_headers[SESSION_HEADER] = session
        self.connection.request("POST", "/invocations", data, all_headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def close(self) -> None:
        self.connection.close()


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``work()`` on a daemon thread; its result lands in ``out["result"]`` (join the thread first)."""
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", work()), daemon=True)
    thread.start()
    return thread, out


def in_threads(target: Callable[..., Any], argument_lists: Iterable[Sequence[Any]]) -> list[Any]:
    """Run ``target(*args)`` for each argument list, all at once, one thread each; their results in order.

    An exception in any thread is re-raised here (the first one), so a failing client fails the test.
    """
    arguments = list(argument_lists)
    results: list[Any] = [None] * len(arguments)
    errors: list[BaseException] = []

    def run(index: int, args: Sequence[Any]) -> None:
        try:
            results[index] = target(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, args)) for i, args in enumerate(arguments)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def questions_in_order(events: list[StoredEvent]) -> list[str]:
    """The questions of a stored session, oldest first, after checking it is well-formed.

    Well-formed: every event is one whole turn, the USER question then the ASSISTANT answer to
    that same question (no interleaving, no half turn, nothing else).
    """
    questions = []
    for event in events:
        roles = [m.role for m in event.messages]
        assert roles == [MessageRole.USER, MessageRole.ASSISTANT], f"not one whole turn: {event.messages!r}"
        question, answer = (m.text for m in event.messages)
        assert answer == echo(question), f"turn {question!r} holds another turn's answer {answer!r}"
        questions.append(question)
    return questions


def assert_counts_and_history(acknowledged: dict[str, int], events: list[StoredEvent]) -> None:
    """``acknowledged``: question -> the ``message_count`` its 200 response reported, for one session.

    Every acknowledged turn is stored exactly once, the counts are exactly 1..N, and the
    count a client was given is its turn's position in the stored history.
    """
    assert sorted(acknowledged.values()) == list(range(1, len(acknowledged) + 1)), "counts repeat or skip"
    stored = questions_in_order(events)
    assert len(stored) == len(set(stored)), "a turn was stored twice"
    assert sorted(stored) == sorted(acknowledged), "stored turns differ from the acknowledged ones"
    assert {q: i for i, q in enumerate(stored, start=1)} == acknowledged, "a count is not its turn's position"


@dataclass(frozen=True)
class Load:
    """``clients`` x ``per_client`` turns on ONE session while ``sessions`` other clients each send
    ``per_session`` turns to their own session, all at once."""

    clients: int
    per_client: int
    sessions: int
    per_session: int

    def callers(self) -> list[tuple[str, int]]:
        return [("one", w) for w in range(self.clients)] + [("own", s) for s in range(self.sessions)]

    def run(self, post: Callable[[dict, str], tuple[int, Any]], kind: str, index: int) -> dict[str, int]:
        """One caller's turns through ``post(body, session) -> (status, body)``: question -> message_count."""
        session, count, name = ("busy", self.per_client, f"client {index}") if kind == "one" else (
            f"own-{index}", self.per_session, f"session {index}")
        acknowledged = {}
        for n in range(count):
            question = f"{name} question {n}"
            status, body = post({"message": question}, session)
            assert status == 200, body
            assert (body["response"], body["session_id"]) == (echo(question), session)
            acknowledged[question] = body["message_count"]
        return acknowledged

    def check(self, results: list[dict[str, int]], store: SessionStore | None) -> None:
        """Counts exactly 1..N per session; with the store at hand, every turn stored once, in count order."""
        busy = {q: c for result in results[:self.clients] for q, c in result.items()}
        assert sorted(busy.values()) == list(range(1, self.clients * self.per_client + 1))
        for own in results[self.clients:]:
            assert sorted(own.values()) == list(range(1, self.per_session + 1))
        if store is not None:
            assert_counts_and_history(busy, store.list_events("default_user", "busy"))
            for s, own in enumerate(results[self.clients:]):
                assert_counts_and_history(own, store.list_events("default_user", f"own-{s}"))

    @property
    def requests(self) -> int:
        return self.clients * self.per_client + self.sessions * self.per_session


def http_caller(port: int, load: Load, kind: str, index: int) -> dict[str, int]:
    client = Client(port)
    try:
        return load.run(client.post, kind, index)
    finally:
        client.close()
