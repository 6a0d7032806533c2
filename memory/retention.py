"""How long a store keeps what outlives a turn: idempotency keys and deleted sessions' generations."""

from __future__ import annotations

#: how long an idempotency key is remembered when ``SESSION_TTL`` is not set
DEFAULT_REQUEST_RETENTION = 24 * 3600
#: at least how long a deleted session's generation (its tombstone) is kept
GENERATION_RETENTION = 7 * 24 * 3600


def request_retention(ttl: int | None) -> int:
    """Seconds an idempotency key stays recorded: ``SESSION_TTL`` if set, else 24 h."""
    return ttl if ttl is not None else DEFAULT_REQUEST_RETENTION


def generation_retention(ttl: int | None) -> int:
    """Seconds a tombstone outlives its last write: longer than any turn or fold that could race it."""
    return max(ttl or 0, GENERATION_RETENTION)
