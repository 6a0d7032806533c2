"""The long-term memory contract: what the request path calls, whatever keeps the records.

Definitions every implementation honours (``tests/test_longterm_contract.py``
checks the local ones, ``tests/test_longterm_agentcore.py`` the service's):

- A *record* belongs to one actor and is searchable from every session of that
  actor, never another actor's. It keeps its provenance: session id, turn
  number (the session's ``message_count`` for that exchange), role and time.
- ``search(actor_id, query, top_k, exclude)`` returns at most ``top_k`` of that
  actor's records, best first, leaving out the (session, turn) pairs in
  ``exclude`` (the turns already in the model's window).
- ``record_exchange`` stores the exchange's text before it returns (one cheap
  write, never an embedding): what it acknowledged survives any kill and is
  found by keywords at once. Vectors follow in the background; after
  ``flush()`` everything recorded is also found by meaning. ``close()`` adds
  vectors for a bounded time; what is left keeps its text and gets its vector
  at the next start. A session id reused in a later generation (after expiry)
  stores its new turns: records are keyed by (session, generation, turn).
- Records outlive their session: an expired session's records stay (long-term
  memory exists to outlive sessions); ``delete_session``, ``delete_record`` and
  ``forget`` delete them.
- ``record_id`` is public and reveals nothing: random, never a sequence shared
  by actors. ``delete_record`` and ``list_records`` see the caller's actor only.
- **A delete stays deleted.** ``delete_session(actor, session, generation)``
  removes the session's records and refuses every later write of that session
  carrying a generation ``<= generation`` made within ``LATE_RECORD_S`` of the delete (a turn in flight
  then: ``cleared_since``); ``forget(actor)`` removes all of the
  actor's records and refuses every write that was queued or in flight before it
  (each write carries the actor's *epoch*, read when its request started, and is
  stored only if the epoch is still current, atomically with the insert).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from longterm.text import iso_time

#: a record made this long after its session's records were deleted is no late record of the cleared life,
#: whatever its generation: the session stores keep a deleted session's generation at least this long
#: (``memory.retention.GENERATION_RETENTION``), so a turn carrying an old generation after it is a new life
#: of a session id used again (its store started the generations over), not a turn begun before the delete
LATE_RECORD_S = 7 * 24 * 3600


def cleared_since(record: MessageRecord, deleted_generation: int, deleted_at: float) -> bool:
    """Whether ``record`` belongs to a life of its session deleted since its turn began (so it is refused).

    Without the time, a session id cleared and used again after its store forgot the generation
    (Redis and DynamoDB keep it 7 days, any store with ``SESSION_TTL`` ``max(SESSION_TTL, 7 days)``) had
    every long-term record of its new life refused, for good.
    """
    return record.generation <= deleted_generation and record.created_at <= deleted_at + LATE_RECORD_S


@dataclass(frozen=True)
class Memory:
    """One record found by ``search``."""

    text: str
    session_id: str
    #: the exchange's number in its session (the ``message_count`` the client saw); 0 when unknown
    turn: int
    #: calibrated relevance in [0, 1] (comparable across queries: ``LTM_MIN_SCORE`` applies to it)
    score: float
    #: when the record was said (epoch seconds)
    created_at: float
    record_id: str
    #: ``user``, ``assistant``, or ``fact`` (a record a service or extractor distilled)
    role: str = "user"

    def to_json(self) -> dict[str, Any]:
        """The record as the ``search_memory`` action returns it."""
        return {"text": self.text, "session_id": self.session_id, "turn": self.turn, "role": self.role,
                "score": round(self.score, 4), "created_at": iso_time(self.created_at)}


@dataclass(frozen=True)
class MemoryPage:
    """One page of ``list_records``: the actor's records, newest first (``score`` is 1.0: nothing was ranked)."""

    records: list[Memory]
    #: pass it back as ``cursor`` for the next (older) page; None on the last page
    next_cursor: str | None


@dataclass(frozen=True)
class MessageRecord:
    """One message to store as a record (a user message, a reply, or a LoCoMo dialog turn)."""

    actor_id: str
    session_id: str
    turn: int
    #: position inside the turn (0: the user's message, 1: the reply)
    seq: int
    role: str
    text: str
    created_at: float
    #: the session's generation when the turn started (see ``delete_session``)
    generation: int = 0
    #: the actor's epoch when the turn started (see ``forget``); None: read when the record is queued
    epoch: int | None = None
    #: a speaker name, when one is known (LoCoMo's participants); "" in the assistant
    speaker: str = ""
    #: text describing an attachment (an image caption); searched with a lower weight
    caption: str = ""


class LongTermMemory(abc.ABC):
    """Long-term memory of every actor of a process. One instance; thread-safe."""

    #: in logs and in the start-up line
    name: str = "longterm"

    @abc.abstractmethod
    def search(self, actor_id: str, query: str, top_k: int,
               exclude: frozenset[tuple[str, int]] | set[tuple[str, int]] = frozenset(),
               min_score: float = 0.0) -> list[Memory]:
        """The actor's best ``top_k`` records for ``query``, best first, without the ``exclude`` turns.

        With ``min_score``, only records scored at least that (``LTM_MIN_SCORE``): a record under it takes
        no place of the ``top_k``, so a relevant record ranked below it still comes back."""

    @abc.abstractmethod
    def record_exchange(self, actor_id: str, session_id: str, turn: int, user: str, reply: str,
                        created_at: float, generation: int, epoch: int | None = None) -> None:
        """Store one exchange's text (two records) now; their vectors follow in the background."""

    @abc.abstractmethod
    def delete_session(self, actor_id: str, session_id: str, generation: int) -> int:
        """Remove the session's records; refuse later writes of it with a generation <= ``generation``."""

    @abc.abstractmethod
    def forget(self, actor_id: str) -> int:
        """Remove every record of the actor; refuse every write queued or in flight before this call."""

    def delete_record(self, actor_id: str, record_id: str) -> bool:
        """Delete one record of the actor; False (and nothing revealed) when the actor has none by that id."""
        raise NotImplementedError(f"{self.name} long-term memory cannot delete one record")

    def list_records(self, actor_id: str, limit: int = 50, cursor: str | None = None) -> MemoryPage:
        """What is remembered about the actor, newest first, ``limit`` a page; ``cursor`` from the last page."""
        raise NotImplementedError(f"{self.name} long-term memory cannot list records")

    def epoch(self, actor_id: str) -> int:
        """The actor's current epoch: read it when a request starts, hand it to ``record_exchange``."""
        return 0

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record stored so far has its vector (True) or ``timeout`` passed (False)."""
        return True

    def close(self) -> None:
        """Add vectors for a bounded time (the rest at the next start), then release what was opened. Idempotent."""

    def describe(self) -> str:
        """One line for the start-up log: where records live and how they are written."""
        return self.name
