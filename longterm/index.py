"""One actor's records in memory, as arrays for scoring: vectors, terms, provenance and neighbour links.

``ActorBuffers`` grows in place (capacity 1.5x), so the records a write adds
cost the next search only their own rows: no copy of the actor's vectors per
write. Each record is linked to the previous and next message of its session
(same generation), found with a per-session sorted list, whatever order the
records arrive in.

Only the records that have a vector hold a row of the vector matrix (``dense``:
rows in the order their vectors arrived, ``dense_records`` saying whose). The
model's replies are not embedded (``longterm.local.EMBED_REPLIES``), so half of
an assistant's records have none: a search's matrix-vector product, which reads
the whole matrix from memory on every turn, reads half as much (8,200 rows of
1.5 kB instead of 16,400 for the throughput benchmark's actor), and the memory
holds no rows of zeros.

Each record's terms (Porter stems of its text, caption and day) go into an
inverted index: per stem, a compact ``array`` of (record << 2 | column, count)
pairs, appended with one C call (a concurrent reader copies whole pairs). The
keyword score is computed from it in numpy (``longterm.keyword``): no FTS5
query on the request path.

A search works on an ``ActorIndex``: a snapshot whose arrays are views of the
first ``size`` rows (rows appended later are beyond them) and whose neighbour
links are copies (later inserts may relink older rows).
"""

from __future__ import annotations

import bisect
import functools
import threading
from array import array
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from longterm.embedding import DIMENSIONS
from longterm.occupation import OCCUPATION, states_occupation
from longterm.relevance import STATEMENT, record_kind
from longterm.relatives import introduced
from longterm.text import date_words, proper_names, stem, tokenize

#: (id, session_id, generation, turn, seq, speaker, vector bytes, text, caption, created_at)
Row = tuple[int, str, int, int, int, str, bytes, str, str, float]

#: the columns a record's own terms are indexed in (the previous and next message's come from their text)
TEXT, CAPTION, DAY = 0, 1, 2
#: a record's place in a posting: ``record << COLUMN_BITS | column``
COLUMN_BITS = 2
#: one posting list: (record << 2 | column, count) pairs, flat
Postings = array


@functools.lru_cache(maxsize=4096)
def day_terms(day: int) -> tuple[str, ...]:
    """The stems of a day's words ("8 May 2023"), by day number since the epoch (many records share one)."""
    return tuple(stem(t) for t in tokenize(date_words(day * 86_400.0)))


def term_counts(text: str) -> Counter[str]:
    """Stem -> occurrences in ``text``."""
    return Counter(stem(t) for t in tokenize(text))


@dataclass(frozen=True)
class ActorIndex:
    """A consistent snapshot of one actor's first ``size`` records."""

    ids: np.ndarray  # record ids (rowids), ascending
    #: (rows, 384) float32, unit length: the vectors of the records that have one, in the order they came
    dense: np.ndarray
    #: the record (index) of each row of ``dense``
    dense_records: np.ndarray
    #: per record its row of ``dense``, -1 if it has no vector (the model's replies, or not embedded yet); shared
    #: with later snapshots: a row at or beyond ``len(dense)`` came later, and counts as none here
    dense_row: np.ndarray
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
    #: (size, 3) tokens per record in its text, caption and day
    lengths: np.ndarray
    #: tokens per record as BM25 counts them: its text, caption and day, its neighbours' text, an owner token
    record_lengths: np.ndarray
    #: speaker code per record (0: none; see speaker_codes): the speaker boost compares integers
    speaker_ids: np.ndarray
    speaker_codes: Mapping[str, int]
    #: stem -> posting list (shared with later snapshots: may hold records beyond size, see ``postings``)
    inverted: Mapping[str, Postings]
    #: per record its kind (``longterm.relevance``: statement, question, chatter, reply), from its text
    kinds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    #: per record when it was said (epoch seconds): recency among records of one subject
    created: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    #: per statement that names something: the stems of its names (``text.proper_names``), by record (shared
    #: with later snapshots: may hold records beyond size)
    names_of: Mapping[int, frozenset[str]] = field(default_factory=dict)
    #: every name stem the actor's statements use (shared with later snapshots: may run ahead)
    name_stems: Collection[str] = field(default_factory=frozenset)
    #: relation stem -> the names the actor's statements give it ("brother" -> {"declan"}; ``relatives.introduced``)
    relatives_of: Mapping[str, Collection[str]] = field(default_factory=dict)
    version: int = -1
    deletes: int = -1
    #: per record: has its vector yet (None: all have). A record stored on the request path waits for the
    #: background writer's embedding; until then its vector is zeros and only its keywords can find it
    has_vector: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.ids.size)

    def cosines(self, query: np.ndarray) -> np.ndarray:
        """Every record's cosine with the unit vector ``query`` (0 for a record without a vector)."""
        out = np.zeros(self.size, np.float32)
        if self.dense_records.size:
            out[self.dense_records] = self.dense @ query
        return out

    def vectors_of(self, records: Sequence[int]) -> np.ndarray:
        """The vectors of ``records`` (indexes), one row each: zeros for a record without one."""
        rows = self.dense_row[np.asarray(records, np.int64)] if len(records) else np.zeros(0, np.int64)
        out = np.zeros((len(rows), DIMENSIONS), np.float32)
        has = (rows >= 0) & (rows < len(self.dense))  # a row beyond the snapshot's came after it
        out[has] = self.dense[rows[has]]
        return out

    @property
    def vectors(self) -> np.ndarray:
        """Every record's vector (zeros where none), as a copy: for inspection; a search uses ``cosines``."""
        return self.vectors_of(range(self.size))

    def postings(self, stem_: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(records, columns, counts) of ``stem_`` among this snapshot's records."""
        found = self.inverted.get(stem_)
        if not found:
            empty = np.zeros(0, np.int64)
            return empty, empty, empty
        pairs = np.frombuffer(found[:], np.int32).astype(np.int64).reshape(-1, 2)  # one copy, whole pairs
        places = pairs[:, 0]
        records = places >> COLUMN_BITS
        keep = records < self.size
        return records[keep], (places & ((1 << COLUMN_BITS) - 1))[keep], pairs[keep, 1]


class ActorBuffers:
    """The growable arrays behind an actor's snapshots. Appends and snapshots are serialised by a lock."""

    def __init__(self, version: int = -1, deletes: int = -1, capacity: int = 64) -> None:
        self.version = version
        self.deletes = deletes
        #: the store's per-actor count of vectors added to stored records, as far as these buffers have them
        self.embedded = 0
        self.missing = 0  # records without a vector yet
        self.size = 0
        self._lock = threading.Lock()
        self._ids = np.zeros(capacity, np.int64)
        self._dense_row = np.full(capacity, -1, np.int64)
        self.dense_size = 0
        self._dense = np.zeros((capacity, DIMENSIONS), np.float32)
        self._dense_records = np.zeros(capacity, np.int64)
        self._sessions = np.zeros(capacity, np.int64)
        self._turns = np.zeros(capacity, np.int64)
        self._speakers = np.zeros(capacity, object)
        self._prev = np.full(capacity, -1, np.int64)
        self._next = np.full(capacity, -1, np.int64)
        self._lengths = np.zeros((capacity, 3), np.int32)
        self._record_lengths = np.zeros(capacity, np.float64)
        self._speaker_ids = np.zeros(capacity, np.int32)
        self._has_vector = np.zeros(capacity, bool)
        self._kinds = np.zeros(capacity, np.int8)
        self._created = np.zeros(capacity, np.float64)
        self._speaker_codes: dict[str, int] = {"": 0}
        self._inverted: dict[str, Postings] = {}
        self._codes: dict[str, int] = {}
        self._position: dict[int, int] = {}
        self._order: dict[tuple[int, int], list[tuple[int, int, int]]] = {}  # (session, generation) -> sorted
        self._names: set[str] = set()
        self._df: Counter[str] = Counter()
        self._names_of: dict[int, frozenset[str]] = {}
        self._name_stems: set[str] = set()
        self._relatives_of: dict[str, list[str]] = {}

    @property
    def last_id(self) -> int:
        return int(self._ids[self.size - 1]) if self.size else 0

    def _grow(self, need: int) -> None:
        capacity = len(self._ids)
        if need <= capacity:
            return
        capacity = _grown(capacity, need)
        for name in ("_ids", "_dense_row", "_sessions", "_turns", "_speakers", "_prev", "_next", "_lengths",
                     "_record_lengths", "_speaker_ids", "_has_vector", "_kinds", "_created"):
            _regrow(self, name, capacity, self.size, -1 if name in ("_prev", "_next", "_dense_row") else 0)

    def _add_dense(self, k: int, vector: bytes) -> None:
        """Record ``k``'s vector as the next row of the matrix (a zero vector, a reply's, gets none)."""
        values = np.frombuffer(vector, "<f4")
        if not values.any():
            return
        m = self.dense_size
        capacity = len(self._dense_records)
        if m >= capacity:
            capacity = _grown(capacity, m + 1)
            _regrow(self, "_dense", capacity, m, 0)
            _regrow(self, "_dense_records", capacity, m, 0)
        self._dense[m] = values
        self._dense_records[m] = k
        self._dense_row[k] = m
        self.dense_size = m + 1

    def append(self, rows: Iterable[Row], version: int) -> None:
        """Add newer records (ids above ``last_id``) and link them into their sessions.

        ``rows`` may be a cursor: rows are read one at a time, so loading an actor never holds all of
        its rows (1.5 kB of vector each) as Python objects at once.
        """
        with self._lock:
            for rowid, session_id, generation, turn, seq, speaker, vector, text, caption, created_at in rows:
                if self.size and rowid <= self._ids[self.size - 1]:
                    continue  # another search appended it first
                self._grow(self.size + 1)
                k = self.size
                code = self._codes.setdefault(session_id, len(self._codes))
                self._ids[k] = rowid
                if vector:
                    self._add_dense(k, vector)
                self._has_vector[k] = bool(vector)
                self.missing += not vector
                self._sessions[k], self._turns[k], self._speakers[k] = code, turn, speaker
                self._speaker_ids[k] = self._speaker_codes.setdefault(speaker, len(self._speaker_codes))
                self._position[int(rowid)] = k
                self._kinds[k], self._created[k] = record_kind(text, seq), created_at
                if self._kinds[k] == STATEMENT:
                    named = proper_names(text)
                    if named:
                        self._names_of[k] = named
                        self._name_stems.update(named)
                        for relation, name in introduced(text):
                            known = self._relatives_of.setdefault(relation, [])
                            if name not in known:
                                known.append(name)  # appended in place: a snapshot's reader sees whole lists
                if speaker:
                    self._names.add(speaker)
                own_work = self._kinds[k] == STATEMENT and not speaker and states_occupation(text)
                self._index(k, text, caption, created_at, own_work)
                self._link(k, (code, generation), (turn, seq))
                self.size += 1
            self.version = max(self.version, version)

    def add_vectors(self, rows: Iterable[tuple[int, bytes]], embedded: int) -> None:
        """Vectors the background writer added to records already here (a record not here yet brings its own)."""
        with self._lock:
            for rowid, vector in rows:
                k = self._position.get(int(rowid))
                if k is None or k >= self.size or not vector or self._has_vector[k]:
                    continue
                self._add_dense(k, vector)
                self._has_vector[k] = True
                self.missing -= 1
            self.embedded = max(self.embedded, embedded)

    def _index(self, k: int, text: str, caption: str, created_at: float, own_work: bool = False) -> None:
        """Record ``k``'s terms into the inverted index and its column lengths (text, caption, day); ``own_work``:
        the user says what they do for a living (``longterm.occupation``), one more term of its text."""
        words = term_counts(text)
        if own_work:
            words[OCCUPATION] += 1
        self._df.update(words.keys())
        day = day_terms(int(created_at // 86_400))
        lengths = [sum(words.values()), 0, len(day)]
        columns: list[tuple[int, Counter[str]]] = [(TEXT, words), (DAY, Counter(day))]
        if caption:
            pictured = term_counts(caption)
            lengths[CAPTION] = sum(pictured.values())
            columns.append((CAPTION, pictured))
        self._lengths[k] = lengths
        for column, counts in columns:
            place = k << COLUMN_BITS | column
            for term, count in counts.items():
                postings = self._inverted.get(term)
                if postings is None:
                    postings = self._inverted[term] = array("i")  # 4 bytes: records up to 2**29
                postings.extend((place, count))  # one call: a reader copying the list sees whole pairs

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
        for j in (before, k, after):
            if j != -1:
                self._record_lengths[j] = self._own_length(j) + self._text_length(self._prev[j]) + \
                    self._text_length(self._next[j])

    def _own_length(self, j: int) -> int:
        return int(self._lengths[j].sum()) + 1  # + the owner token FTS5 counts in every row

    def _text_length(self, j: int) -> int:
        return int(self._lengths[j, TEXT]) if j != -1 else 0

    def snapshot(self) -> ActorIndex:
        with self._lock:
            n, m = self.size, self.dense_size
            # the rows of a snapshot never change: a vector added later is a new row beyond m, which the
            # snapshot's ``dense_row`` may already point to (a view) and ``vectors_of`` treats as none
            return ActorIndex(self._ids[:n], self._dense[:m], self._dense_records[:m], self._dense_row[:n],
                              self._sessions[:n], self._turns[:n],
                              self._speakers[:n], self._prev[:n].copy(), self._next[:n].copy(), dict(self._codes),
                              self._position, tuple(sorted(self._names, key=lambda s: (-len(s), s))), self._df,
                              self._lengths[:n], self._record_lengths[:n].copy(), self._speaker_ids[:n],
                              dict(self._speaker_codes), self._inverted, self._kinds[:n], self._created[:n],
                              self._names_of, self._name_stems, self._relatives_of, self.version, self.deletes, self._has_vector[:n].copy() if self.missing else None)


def _grown(capacity: int, need: int) -> int:
    """The capacity an array of ``capacity`` rows grows to when it needs ``need``: 1.5x per growth."""
    return max(need + need // 8, capacity + capacity // 2)


def _regrow(buffers: ActorBuffers, name: str, capacity: int, used: int, fill: int) -> None:
    """Replace the array ``name`` by one of ``capacity`` rows holding its first ``used`` rows.

    Zeros, not a fill, where the fill is 0: the rows beyond ``used`` stay untouched pages until written (a third
    of the vectors' capacity, 12 MB at 16,000 records, was resident for nothing)."""
    old = getattr(buffers, name)
    shape = (capacity, *old.shape[1:])
    new = np.full(shape, fill, old.dtype) if fill else np.zeros(shape, old.dtype)
    new[:used] = old[:used]
    setattr(buffers, name, new)


def build_index(rows: Sequence[Row], version: int = 0, deletes: int = 0) -> ActorIndex:
    """An index of ``rows`` (any order of conversation; ascending ids)."""
    buffers = ActorBuffers(version, deletes)
    buffers.append(rows, version)
    return buffers.snapshot()


def empty_index() -> ActorIndex:
    return build_index([])


def keep_bounded(cache: OrderedDict[str, ActorBuffers], actor_id: str, buffers: ActorBuffers, max_rows: int) -> None:
    """Keep ``buffers`` as the actor's cached index, newest use last; drop the least recently used actors while the
    cache holds more than ``max_rows`` records (always keeping the newest). The caller holds the cache's lock."""
    cache[actor_id] = buffers
    cache.move_to_end(actor_id)
    total = sum(b.size for b in cache.values())
    while total > max_rows and len(cache) > 1:
        _, dropped = cache.popitem(last=False)
        total -= dropped.size
