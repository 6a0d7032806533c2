"""``SESSION_TTL``: the one expiry rule every store that applies it follows (memory, sqlite, redis, dynamodb).

- **A write** keeps the session alive ``SESSION_TTL`` seconds from the write.
- **A turn's** ``load_window`` holds it ``max(SESSION_TTL, turn_grace)`` seconds from the load, where
  ``turn_grace`` is the longest a turn may take between its load and its write (the model's deadline and
  storing). So a turn slower than the TTL still finds the history it loaded when it stores, and its
  write then counts ``SESSION_TTL`` from the turn's end. Other reads do not extend the expiry.
- **Expiry only moves later**: a write never shortens the hold of a turn still in progress.
- **An expired session starts a new generation.** It reads as empty (count 0, not listed); the next
  ``load_window`` reports the next generation and the next write starts the session again at 1 under
  it. The generation outlives the session's data (``generation_retention``), so a session id used again
  after expiry never repeats a (generation, turn) pair of its earlier life (long-term memory keys its
  records by it), and a writer that loaded the old life is refused (``SessionChanged``) like one that
  loaded a cleared session. A session that expired holding no turn (a summary alone) keeps its generation.
- **Expiry is retention of the short-term history, not a delete request**: the session's long-term
  records stay (``clear_session``, ``forget`` and per-record deletes remove those).
"""

from __future__ import annotations

#: seconds a turn may take from its ``load_window`` to its ``add_turns`` when the store is given no
#: ``turn_grace``: the largest default ``MODEL_TIMEOUT_S`` (120 s) and time to store
DEFAULT_TURN_GRACE = 150.0


def write_expiry(now: float, ttl: float, current: float | None = None) -> float:
    """When a session written at ``now`` expires: ``ttl`` after the write, never before ``current``."""
    return max(now + ttl, current if current is not None else float("-inf"))


def load_expiry(now: float, ttl: float, turn_grace: float, current: float | None = None) -> float:
    """When a session a turn loads at ``now`` expires: after the turn and the TTL, never before ``current``."""
    return max(now + max(ttl, turn_grace), current if current is not None else float("-inf"))
