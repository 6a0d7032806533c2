"""One actor's records in memory, as arrays for scoring: vectors, provenance and neighbour links.

``ActorBuffers`` grows in place (capacity doubles), so the records a write adds
cost the next search only their own rows: no copy of the actor's vectors per
write (a 16,000-record actor is 25 MB of float32). Each record is linked to the
previous and next message of its session (same generation), found with a
per-session sorted list, whatever order the records arrive in.

A search works on an ``ActorIndex``: a snapshot whose arrays are views of the
first ``size`` rows (rows appended later are beyond them) and whose neighbour
links are copies (later inserts may relink older rows).
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from longterm.embedding import DIMENSIONS
from longterm.text import stem, tokenize

#: (id, session_id, generation, turn, seq, speaker, vector bytes, text)
Row = tuple[int, str, int, int, int, str, bytes, str]


@dataclass(frozen=True)
class ActorIndex:
    """A consistent snapshot of one actor's first ``size`` records."""

    ids: np.ndarray  # record ids (rowids), ascending
    vectors: np.ndarray  # (size, 384) float32, unit length
    sessions: np.ndarray  # session code per record (see session_codes)
    turns: np.ndarray
    speakers: np.ndarray  # object array of speaker names ("" when none)
    prev_index: np.ndarray  # the previous message of the same session, -1 if none
    next_index: np.ndarray
    session_codes: dict[str, int]
    position: dict[int, int]  # rowid -> index; may hold rows beyond size (check j < size)
    names: tuple[str, ...]  # distinct speaker names, longest first
    #: stem -> how many of the actor's records contain it (shared with later snapshots: may run ahead)
    df: Mapping[str, int]
    version: int = -1
    deletes: int = -1

    @property
    def size(self) -> int:
        return int(self.ids.size)


class ActorBuffers:
    """The growable arrays behind an actor's snapshots. Appends and snapshots are serialised by a lock."""

    def __init__(self, version: int = -1, deletes: int = -1, capacity: int = 64) -> None:
        self.version = version
        self.deletes = deletes
        self.size = 0
        self._lock = threading.Lock()
        self._ids = np.zeros(capacity, np.int64)
        self._vectors = np.zeros((capacity, DIMENSIONS), np.float32)
        self._sessions = np.zeros(capacity, np.int64)
        self._turns = np.zeros(capacity, np.int64)
        self._speakers = np.zeros(capacity, object)
        self._prev = np.full(capacity, -1, np.int64)
        self._next = np.full(capacity, -1, np.int64)
        self._codes: dict[str, int] = {}
        self._position: dict[int, int] = {}
        self._order: dict[tuple[int, int], list[tuple[int, int, int]]] = {}  # (session, generation) -> sorted
        self._names: set[str] = set()
        self._df: Counter[str] = Counter()

    @property
    def last_id(self) -> int:
        return int(self._ids[self.size - 1]) if self.size else 0

    def _grow(self, need: int) -> None:
        capacity = len(self._ids)
        if need <= capacity:
            return
        capacity = max(need + need // 8, capacity + capacity // 2)  # 1.5x per growth: an actor's vectors are most of it
        for name in ("_ids", "_vectors", "_sessions", "_turns", "_speakers", "_prev", "_next"):
            old = getattr(self, name)
            new = np.full((capacity, *old.shape[1:]), -1 if name in ("_prev", "_next") else 0, old.dtype)
            new[: self.size] = old[: self.size]
            setattr(self, name, new)

    def append(self, rows: Iterable[Row], version: int) -> None:
        """Add newer records (ids above ``last_id``) and link them into their sessions.

        ``rows`` may be a cursor: rows are read one at a time, so loading an actor never holds all of
        its rows (1.5 kB of vector each) as Python objects at once.
        """
        with self._lock:
            for rowid, session_id, generation, turn, seq, speaker, vector, text in rows:
                if self.size and rowid <= self._ids[self.size - 1]:
                    continue  # another search appended it first
                self._grow(self.size + 1)
                k = self.size
                code = self._codes.setdefault(session_id, len(self._codes))
                self._ids[k] = rowid
                self._vectors[k] = np.frombuffer(vector, "<f4")
                self._sessions[k], self._turns[k], self._speakers[k] = code, turn, speaker
                self._position[int(rowid)] = k
                if speaker:
                    self._names.add(speaker)
                self._df.update({stem(token) for token in tokenize(text)})
                self._link(k, (code, generation), (turn, seq))
                self.size += 1
            self.version = max(self.version, version)

    def _link(self, k: int, conversation: tuple[int, int], place: tuple[int, int]) -> None:
        order = self._order.setdefault(conversation, [])
        at = bisect.bisect(order, (*place, k))
        order.insert(at, (*place, k))
        before = order[at - 1][2] if at > 0 else -1
        after = order[at + 1][2] if at + 1 < len(order) else -1
        self._prev[k], self._next[k] = before, after
        if before != -1:
            self._next[before] = k
        if after != -1:
            self._prev[after] = k

    def snapshot(self) -> ActorIndex:
        with self._lock:
            n = self.size
            return ActorIndex(self._ids[:n], self._vectors[:n], self._sessions[:n], self._turns[:n],
                              self._speakers[:n], self._prev[:n].copy(), self._next[:n].copy(), dict(self._codes),
                              self._position, tuple(sorted(self._names, key=lambda s: (-len(s), s))), self._df,
                              self.version, self.deletes)


def build_index(rows: Sequence[Row], version: int = 0, deletes: int = 0) -> ActorIndex:
    """An index of ``rows`` (any order of conversation; ascending ids)."""
    buffers = ActorBuffers(version, deletes)
    buffers.append(rows, version)
    return buffers.snapshot()


def empty_index() -> ActorIndex:
    return build_index([])
