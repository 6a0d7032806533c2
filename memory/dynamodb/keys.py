"""The table's keys (how a session, an actor and an idempotency key become ``pk`` / ``sk``) and item limits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

DEFAULT_TABLE = "agentcore-sessions"
TURN_PREFIX = "turn#"
META_SK = "turn#meta"
REQUEST_PREFIX = "idem#"
ACTOR_INDEX = "sessions_by_actor"
TTL_ATTRIBUTE = "expires_at"
#: what ``list_sessions`` reads from the index (besides its keys): projected into it
INDEX_ATTRIBUTES = ("session_id", "users", "live_until", "first_message")
#: the bytes of JSON one item holds: with its keys and counters an item stays far below DynamoDB's 400 KB
PART_BYTES = 350_000
#: TransactWriteItems holds at most 100 items and 4 MB: the head, the idempotency record (if any), fragments
TRANSACTION_ITEMS = 100
MAX_WRITE_BYTES = 3_500_000
#: a conditional write lost to other writers is tried at least this often, and for at least this many seconds,
#: before the request gives up with a 503 (``writes.write_attempts``)
WRITE_ATTEMPTS = 25
WRITE_PATIENCE = 10.0
#: seconds: the wait after the second lost try, doubling with each one up to the cap (``writes.pause_after_lost_race``)
LOST_RACE_PAUSE = 0.005
LOST_RACE_PAUSE_CAP = 0.25
#: the head seen by a window read answers ``get_summary`` in the same thread for this long
WINDOW_SUMMARY_SECONDS = 1.0
HEADS_REMEMBERED = 4096
#: expired sessions one ``list_sessions`` call takes out of the actor index (best effort, once each)
UNLIST_PER_CALL = 25
_LAST_EVENT = 10**12 - 1
_LAST_PART = 999
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0


def session_pk(actor_id: str, session_id: str) -> str:
    """The partition of one session: length-prefixed ids, so distinct pairs never share it."""
    return f"{len(actor_id)}:{actor_id}:{len(session_id)}:{session_id}"


def actor_key(actor_id: str) -> str:
    """The ``sessions_by_actor`` partition of an actor (never empty, as an index key must be)."""
    return f"{len(actor_id)}:{actor_id}"


def request_sk(key: str) -> str:
    """An idempotency record's sort key: a digest, so any key (any length, any characters) fits."""
    return REQUEST_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, order=True)
class FragmentKey:
    epoch: int
    turn: int
    event: int
    part: int

    @property
    def sk(self) -> str:
        return f"{TURN_PREFIX}{self.epoch:013d}#{self.turn:012d}#{self.event:012d}#{self.part:03d}"

    @classmethod
    def parse(cls, sk: str) -> FragmentKey | None:
        try:
            epoch, turn, event, part = sk[len(TURN_PREFIX):].split("#")
            return cls(int(epoch), int(turn), int(event), int(part))
        except ValueError:
            return None
