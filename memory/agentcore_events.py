"""AgentCore Memory events as the store reads them, the service's id limits, and the store's constants.

The session store (``memory.agentcore``) keeps the service calls; this module holds what it derives
from events (messages, counts, history turns) and from the service model (id rules).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import botocore.session
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import BadRequest, StoreUnavailable
from memory.base import HistoryTurn, history_turn, message_from_dict

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: event metadata: the session's USER message count after this event
COUNT_KEY = "user_messages"
#: event metadata marking a rolling-summary event (value: the turn it summarises through)
SUMMARY_KEY = "summary_through"
#: event metadata: the SHA-256 (hex) of the idempotency key the turn was stored under
REQUEST_KEY = "request_key"
#: event metadata of a keyed turn: a random value that tells its writer the event is its own
NONCE_KEY = "request_nonce"
TURNS_ONLY = [{"left": {"metadataKey": SUMMARY_KEY}, "operator": "NOT_EXISTS"}]
SUMMARIES_ONLY = [{"left": {"metadataKey": SUMMARY_KEY}, "operator": "EXISTS"}]

PAGE = 100  # ListEvents maxResults limit
EVERYTHING = 1_000_000  # "all events": the SDK pages through them 100 at a time
MAX_MESSAGES_PER_EVENT = 100  # PayloadTypeList max
MAX_TEXT = 100_000  # ContentTextString max
COUNT_CACHE_SECONDS = 120.0  # a tail read's count serves the write that follows it (the model call in between)
COUNT_CACHE_ENTRIES = 10_000
LOCK_STRIPES = 256
GENERATION_ENTRIES = 100_000  # cleared sessions whose generation this process remembers (least recent go first)
LISTING_WORKERS = 8  # ListEvents calls of one list_sessions page in flight at once


def equals(key: str, value: str) -> list[dict[str, Any]]:
    """An event-metadata filter: ``key`` equals ``value``."""
    return [{"left": {"metadataKey": key}, "operator": "EQUALS_TO", "right": {"metadataValue": {"stringValue": value}}}]


def sha256_of(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def client_config() -> Config:
    """Bounded timeouts; throttling and transient errors retried by botocore's standard mode."""
    return Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=10)


class InvalidId(BadRequest, ValueError):
    """An actor or session id AgentCore Memory would refuse (checked before any call)."""


@dataclass(frozen=True)
class IdRule:
    """One id's limits, as the service model states them."""

    kind: str
    pattern: re.Pattern[str]
    min: int
    max: int | None

    @classmethod
    def from_shape(cls, kind: str, shape_name: str) -> IdRule:
        meta = service_model().shape_for(shape_name).metadata
        return cls(kind, re.compile(meta["pattern"]), meta.get("min", 1), meta.get("max"))

    def problem(self, value: object) -> str | None:
        """Why the service would refuse ``value``, or None."""
        if not isinstance(value, str):
            return f"{self.kind} must be a string, got {type(value).__name__}"
        if len(value) < self.min or (self.max is not None and len(value) > self.max):
            limit = f"{self.min}-{self.max}" if self.max is not None else f"at least {self.min}"
            return f"{self.kind} {value!r} is {len(value)} characters long; AgentCore Memory allows {limit}"
        if not self.pattern.fullmatch(value):
            return f"{self.kind} {value!r} does not match AgentCore Memory's pattern {self.pattern.pattern}"
        return None


@functools.lru_cache(maxsize=1)
def service_model() -> Any:
    return botocore.session.get_session().get_service_model("bedrock-agentcore")


@functools.lru_cache(maxsize=1)
def id_rules() -> dict[str, IdRule]:
    return {
        "actor": IdRule.from_shape("actor id", "ActorId"),
        "session": IdRule.from_shape("session id", "SessionId"),
        "memory": IdRule.from_shape("memory id", "MemoryId"),
    }


def unavailable(func: Callable[P, R]) -> Callable[P, R]:
    """Final service or network failures (throttled, 5xx, unreachable, no credentials) -> HTTP 503."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ClientError as e:
            error = e.response.get("Error", {})
            raise StoreUnavailable("agentcore", f"{error.get('Code', 'ClientError')}: {error.get('Message', e)}") from e
        except BotoCoreError as e:
            raise StoreUnavailable("agentcore", f"{type(e).__name__}: {e}") from e

    return wrapper


# -- events -----------------------------------------------------------------------------------

def event_messages(event: Any) -> list[ConversationalMessage]:
    """The conversational messages of an event, in order; other payloads (blobs) are not messages."""
    messages = []
    for item in event.get("payload") or []:
        conversational = item.get("conversational")
        if conversational is None:
            continue
        content = conversational.get("content") or {}
        message = message_from_dict({"role": conversational.get("role"), "text": content.get("text")})
        if message is not None:
            messages.append(message)
    return messages


def event_users(event: Any) -> int:
    return sum(1 for m in event_messages(event) if m.role == MessageRole.USER)


def metadata_int(event: Any, key: str) -> int | None:
    value = ((event.get("metadata") or {}).get(key) or {}).get("stringValue")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def event_time(event: Any) -> float:
    ts = event.get("eventTimestamp")
    return ts.timestamp() if isinstance(ts, datetime) else float(ts or 0)


def sorted_newest_first(events: list[Any]) -> list[Any]:
    """The service lists newest first; sort anyway (stable), so turn order never depends on it."""
    return sorted(events, key=event_time, reverse=True)


def count_from(newest_first: Sequence[Any], complete: bool) -> int | None:
    """The session's USER count from its newest events: the newest count in metadata plus newer USERs.

    None when no event in view carries a count and older events exist (the caller counts them all).
    """
    newer = 0
    for event in newest_first:
        recorded = metadata_int(event, COUNT_KEY)
        if recorded is not None:
            return recorded + newer
        newer += event_users(event)
    return newer if complete else None


def numbered_turns(newest_first: list[Any], complete: bool) -> list[HistoryTurn]:
    """The whole turns among these events (the newest events of a session), numbered, oldest first.

    Numbers count down from the session's count (the newest event's metadata); without it (events
    of other tools) only a complete read can number them. The oldest turn is whole only if it
    starts with a USER message, or if the read is complete (then a turn without one is turn 0).
    """
    total = count_from(newest_first, complete)
    if total is None:
        return []
    timed = [(m, event_time(e)) for e in reversed(newest_first) for m in event_messages(e)]
    groups: list[list[tuple[ConversationalMessage, float]]] = []
    for message, ts in timed:
        if message.role == MessageRole.USER or not groups:
            groups.append([])
        groups[-1].append((message, ts))
    starts_with_user = [g[0][0].role == MessageRole.USER for g in groups]
    if groups and not starts_with_user[0] and not complete:
        groups, starts_with_user = groups[1:], starts_with_user[1:]
    number = total - sum(starts_with_user) + 1
    turns = []
    for group, user in zip(groups, starts_with_user):
        turns.append(history_turn(number if user else 0, [m for m, _ in group], group[0][1]))
        number += user
    return turns
