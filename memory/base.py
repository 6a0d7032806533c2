"""The session store contract, shared by every backend.

It mirrors ``bedrock_agentcore.memory.session.MemorySession`` (``add_turns``,
``get_last_k_turns``, ``list_events``) so the AgentCore backend is a thin
adapter, and speaks the SDK's own ``ConversationalMessage`` / ``MessageRole``.

Definitions every backend honours (the contract suite in
``tests/test_store_contract.py`` checks each one):

- An *event* is what one ``add_turns`` call stored: its messages, whole, in order.
- A *turn* starts at each USER message; messages before the first USER message
  of a session form a turn of their own.
- ``get_last_k_turns`` returns the newest k turns, oldest first, each turn's
  messages in the order they were added. Its cost does not grow with the
  length of the session.
- ``add_turns`` is atomic (all of its messages or none) and returns the
  session's number of USER messages after the write: concurrent writers on one
  session get distinct, gap-free numbers.
- ``delete_session`` removes every event (and the rolling summary) of that
  (actor, session) and nothing else, and returns how many events it removed.
- Sessions are keyed by the pair (actor_id, session_id), never by a string
  built from both, so no two pairs can meet.
"""

from __future__ import annotations

import abc
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.errors import StoreUnavailable

logger = logging.getLogger(__name__)

Turn = list[ConversationalMessage]

P = ParamSpec("P")
R = TypeVar("R")


def unavailable_on(store: str, errors: type[Exception] | tuple[type[Exception], ...],
                   describe: Callable[[Exception], str] = lambda e: f"{type(e).__name__}: {e}",
                   ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator: the driver's ``errors`` become ``StoreUnavailable(store, ...)``, which the entrypoint maps to 503."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except errors as e:
                raise StoreUnavailable(store, describe(e)) from e

        return wrapper

    return decorate


@dataclass(frozen=True)
class Summary:
    """A running summary of turns 1..``through_turn``: those out of the window, and up to ``SUMMARY_BATCH``-1 in it."""

    text: str
    through_turn: int


@dataclass(frozen=True)
class StoredEvent:
    """One ``add_turns`` call as stored: an id, its messages and when it was written."""

    event_id: str
    messages: list[ConversationalMessage]
    timestamp: float = field(default_factory=time.time)


def message_to_dict(message: ConversationalMessage) -> dict[str, str]:
    return {"role": message.role.value, "text": message.text}


def message_from_dict(data: object) -> ConversationalMessage | None:
    """Rebuild a stored message; None (and a warning) for anything malformed or foreign."""
    try:
        role = MessageRole(data["role"])  # type: ignore[index]
        text = data["text"]  # type: ignore[index]
        if not isinstance(text, str):
            raise TypeError("text is not a string")
        return ConversationalMessage(text, role)
    except (KeyError, TypeError, ValueError) as e:
        logger.warning("skipping a stored message that is not a valid message: %s", e)
        return None


def group_turns(messages: Sequence[ConversationalMessage]) -> list[Turn]:
    """Group messages (oldest first) into turns: a new turn starts at each USER message."""
    turns: list[Turn] = []
    for message in messages:
        if message.role == MessageRole.USER or not turns:
            turns.append([])
        turns[-1].append(message)
    return turns


def count_user_messages(messages: Sequence[ConversationalMessage]) -> int:
    return sum(1 for m in messages if m.role == MessageRole.USER)


def check_messages(messages: Sequence[ConversationalMessage]) -> None:
    if not messages:
        raise ValueError("add_turns needs at least one message")
    for message in messages:
        if not isinstance(message, ConversationalMessage):
            raise TypeError(f"add_turns takes ConversationalMessage objects, not {type(message).__name__}")


class SessionStore(abc.ABC):
    """Where conversations live. One instance serves every actor and session of a process."""

    #: Short name used in logs and in 503 errors ("session store 'redis' is unavailable").
    name: str = "store"

    @abc.abstractmethod
    def add_turns(self, actor_id: str, session_id: str, messages: Sequence[ConversationalMessage]) -> int:
        """Store ``messages`` as one event; return the session's USER message count after it."""

    @abc.abstractmethod
    def get_last_k_turns(self, actor_id: str, session_id: str, k: int) -> list[Turn]:
        """The newest ``k`` turns, oldest first."""

    @abc.abstractmethod
    def list_events(self, actor_id: str, session_id: str) -> list[StoredEvent]:
        """Every event of the session, oldest first."""

    @abc.abstractmethod
    def delete_session(self, actor_id: str, session_id: str) -> int:
        """Remove every event of the session; return how many were removed."""

    @abc.abstractmethod
    def get_summary(self, actor_id: str, session_id: str) -> Summary | None:
        """The session's rolling summary, if one was stored."""

    @abc.abstractmethod
    def put_summary(self, actor_id: str, session_id: str, summary: Summary) -> None:
        """Replace the session's rolling summary (``delete_session`` removes it too)."""

    def close(self) -> None:
        """Release what the store opened (connections, files). Idempotent."""
