"""Items as stored and as read: the head, idempotency records, fragments, and the attribute codec."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core.errors import InvalidCursor
from memory.base import Summary, unavailable_on
from memory.dynamodb.keys import PART_BYTES, TTL_ATTRIBUTE, FragmentKey


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _describe(e: Exception) -> str:
    if isinstance(e, ClientError):
        error = e.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', e)}"
    return f"{type(e).__name__}: {e}"


#: anything the service or the network returns after botocore's retries (throttled, endpoint down, no
#: table, no credentials) is a 503 naming the store
_unavailable = unavailable_on("dynamodb", (ClientError, BotoCoreError), _describe)


def _number(item: dict[str, Any], name: str) -> float | None:
    return float(item[name]["N"]) if name in item and "N" in item[name] else None


@dataclass(frozen=True)
class Head:
    """The session's ``turn#meta`` item as read."""

    epoch: int
    generation: int = 0
    turns: int = 0
    users: int = 0
    events: int = 0
    #: SESSION_TTL: the end of the session's life (None: it does not expire)
    live_until: float | None = None
    items_expire_at: float | None = None
    summary: Summary | None = None

    def expired(self, now: float) -> bool:
        return self.live_until is not None and self.live_until <= now

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Head:
        summary = None
        if "summary" in item and "summary_through" in item:
            summary = Summary(item["summary"]["S"], int(item["summary_through"]["N"]))
        return cls(int(_number(item, "epoch") or 0), int(_number(item, "generation") or 0),
                   int(_number(item, "turns") or 0), int(_number(item, "users") or 0),
                   int(_number(item, "events") or 0), _number(item, "live_until"),
                   _number(item, "items_expire_at"), summary)


@dataclass(frozen=True)
class _Seen:
    """A head this process read or wrote; ``live_at``: when a turn's ``load_window`` found it alive."""

    head: Head | None
    live_at: float | None = None


@dataclass(frozen=True)
class _Record:
    """An idempotency record: the count of the turn stored under the key and where that turn's fragments are."""

    count: int
    epoch: int
    event: int
    turn_from: int
    turn_to: int
    expires_at: float

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> _Record:
        return cls(int(_number(item, "count") or 0), int(_number(item, "epoch") or 0),
                   int(_number(item, "event") or 0), int(_number(item, "turn_from") or 0),
                   int(_number(item, "turn_to") or 0), _number(item, TTL_ATTRIBUTE) or 0.0)


@dataclass
class _Fragment:
    key: FragmentKey
    parts: int
    starts_turn: bool
    timestamp: float
    bodies: dict[int, str]


@dataclass(frozen=True)
class _Write:
    """One planned ``add_turns``: the transaction and the head it leaves."""

    head: Head
    actions: list[dict[str, Any]]
    #: the idempotency record's place in ``actions`` (None: no key)
    record_index: int | None


def _n(value: float | int) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _ttl_stamp(at: float) -> int:
    """DynamoDB's TTL attribute is whole epoch seconds: rounded up, never before ``at``."""
    return math.ceil(at)


def split_body(text: str, limit: int = PART_BYTES) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-8 bytes, cut between characters."""
    data = text.encode()
    pieces: list[str] = []
    start = 0
    while start < len(data) or not pieces:
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # never inside a multi-byte character
            end -= 1
        pieces.append(data[start:end].decode())
        start = end
    return pieces


def _cancellation_reasons(e: ClientError) -> list[tuple[str, dict[str, Any] | None]] | None:
    """For a cancelled transaction: each item's reason code and (ALL_OLD) the item as it is; else None."""
    if _code(e) != "TransactionCanceledException":
        return None
    return [(reason.get("Code") or "None", reason.get("Item")) for reason in e.response.get("CancellationReasons") or []]


def _not_issued(cursor: str | None) -> InvalidCursor:
    return InvalidCursor(f"cursor {str(cursor)[:64]!r} is not one this server issued; start again without a cursor")


def _reason(reasons: list[tuple[str, dict[str, Any] | None]], index: int) -> tuple[str, dict[str, Any] | None]:
    return reasons[index] if index < len(reasons) else ("None", None)


def _update(table: str, key: dict[str, Any], sets: list[str], removes: list[str], condition: str | None,
            names: dict[str, str], values: dict[str, Any]) -> dict[str, Any]:
    """UpdateItem parameters with only the names and values the expressions use (DynamoDB refuses others)."""
    expression = ("SET " + ", ".join(sets) if sets else "") + (" REMOVE " + ", ".join(removes) if removes else "")
    used = set(re.findall(r"[#:][A-Za-z_]+", f"{expression} {condition or ''}"))
    params: dict[str, Any] = {"TableName": table, "Key": key, "UpdateExpression": expression.strip(),
                              "ExpressionAttributeNames": {k: v for k, v in names.items() if k in used}}
    used_values = {k: v for k, v in values.items() if k in used}
    if used_values:
        params["ExpressionAttributeValues"] = used_values
    if condition:
        params["ConditionExpression"] = condition
    return params
