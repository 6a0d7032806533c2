"""Long-term memory on this machine: SQLite (file or in-process), hybrid retrieval, a background writer.

Search, per request (the actor's records only):

1. the actor's vectors, terms (an inverted index of Porter stems) and neighbour
   links come from an in-memory cache that follows the store's per-actor version
   (no read of them per search);
2. the query, without the participant names it mentions, is sent to the embedding
   worker (urgent) and, while it is embedded, its content words (stop words
   dropped) are scored by BM25F over text, caption, neighbouring messages and the
   day, in numpy (``longterm.keyword``; FTS5 is kept for the benchmark's baseline);
   then its vector is compared with every vector of the actor;
3. the two are fused, boosted and smoothed (``longterm.scoring``) and weighted by
   each record's kind (``longterm.relevance``: statements above replies, questions
   and small talk); the excluded turns are masked;
4. the best 30 get their relevance probability (the score returned and the one
   ``LTM_MIN_SCORE`` applies to), a newer statement of the same subject moves above
   an older one, near-duplicates collapse, and the best ``top_k`` are read back.

Writing: ``record_exchange`` queues two records (the user's message and the
reply) for the background writer, which stores them. The query vector of the
user's message, computed by the search before the model call, is reused as that
message's record vector, and the reply is not embedded (``EMBED_REPLIES``), so a
turn costs one embedding.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from longterm.base import LongTermMemory, Memory, MessageRecord
from longterm.embedding import DIMENSIONS, Embedder
from longterm.relevance import (KIND_WEIGHT, NEAR_DUPLICATE, REPLY, SAME_SUBJECT, STATEMENT, features, probability,
                                 repeats, restates, words_of)
from longterm.scoring import DEFAULT_WEIGHTS, Weights, boost_speaker, fuse, smooth_neighbours, top_k
from longterm.index import ActorIndex
from longterm.keyword import best_only, bm25f
from longterm.sqlite_store import SQLiteLongTermStore
from longterm.text import (embedded_text, find_names, fts_match, informative_terms, query_terms, strip_names,
                           tokenize)
from longterm.writer import BackgroundWriter, Pending

logger = logging.getLogger(__name__)

#: query vectors remembered for reuse as the user message's record vector
QUERY_VECTORS = 512
#: the model's replies (the second record of an exchange) are not embedded: see docs/longterm.md, "Cost"
EMBED_REPLIES = False
#: the vector of a record that is not embedded: its cosine with every query is 0
NO_VECTOR = np.zeros(DIMENSIONS, np.float32)
#: records ranked before the relevance model and the update rule look at them (a newer statement of the same
#: subject is looked for among these)
POOL = 30
#: how far down the ranking a newer statement of the same subject is looked for (``newest_first``)
UPDATE_REACH = POOL
#: at most this many newer statements pulled in from beyond ``top_k`` per statement they update
UPDATE_PULLS = 1
#: records read back beyond ``top_k``, to fill the places of near-duplicates left out
DUPLICATE_SLACK = 5


@dataclass(frozen=True)
class Scored:
    """One query's evidence over an actor's records (arrays of the index's size)."""

    rank: np.ndarray  # the ranking score: fused, boosted, smoothed, times the kind's weight
    cosine: np.ndarray
    bm25: np.ndarray
    overlap: np.ndarray  # the share of the query's words the record's text contains


class LocalLongTermMemory(LongTermMemory):
    """Long-term memory in a ``SQLiteLongTermStore``, embedded with ``Embedder``."""

    def __init__(self, store: SQLiteLongTermStore, embedder: Embedder, weights: Weights = DEFAULT_WEIGHTS) -> None:
        single_threaded_blas()
        self.store = store
        self.embedder = embedder
        self.weights = weights
        self.name = "sqlite" if store.durable else "memory"
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        #: query vectors kept for reuse (the benchmark raises it to keep every question's vector)
        self.query_cache_size = QUERY_VECTORS
        #: embed the model's replies too (off: a reply costs an embedding, ~4-6 ms of CPU, for no measured gain)
        self.embed_replies = EMBED_REPLIES
        self._queries_lock = threading.Lock()
        self.writer = BackgroundWriter(embedder.embed, store.write, lambda r: embedded_text(r.speaker, r.text))
        # the last resort of a clean shutdown: an interpreter that exits without close() still drains the queue
        atexit.register(_drain_at_exit, weakref.ref(self.writer))

    def describe(self) -> str:
        return f"kept in SQLite ({self.store.where}), written by a background thread, searched by BM25 + MiniLM"

    # -- reading -----------------------------------------------------------------------------

    def epoch(self, actor_id: str) -> int:
        return self.store.epoch(actor_id)

    def search(self, actor_id: str, query: str, top_k: int,
               exclude: frozenset[tuple[str, int]] | set[tuple[str, int]] = frozenset()) -> list[Memory]:
        index = self.store.actor_index(actor_id)
        if not index.size or top_k <= 0 or not query.strip():
            return []  # an actor with no records costs one indexed read, no embedding
        scored = self.score(actor_id, index, query)
        pool = _top(scored.rank, max(top_k, POOL), _allowed(index, exclude))
        relevance = probability(features(scored.cosine[pool], scored.overlap[pool], scored.bm25[pool],
                                         index.kinds[pool]))
        order, score = newest_first(index, pool, relevance, top_k)
        rows = self.store.fetch(actor_id, [int(index.ids[j]) for j in order[:top_k + DUPLICATE_SLACK]])
        found: list[Memory] = []
        kept: list[tuple[int, frozenset[str]]] = []
        asked = words_of(query)
        for j in order:
            row = rows.get(int(index.ids[j]))
            if row is None:  # deleted since the index was read, or beyond what was read
                continue
            words = words_of(row.text)
            memory = Memory(row.text, row.session_id, row.turn, score[j], row.created_at, str(row.id), row.role)
            same = next((n for n, (k, other) in enumerate(kept)
                         if words & asked == other & asked and _near_duplicate(index, j, k, words, other)), None)
            if same is not None:  # the same thing said again, or echoed back: one record stands for both
                k = kept[same][0]
                if (index.kinds[k] == REPLY) != (index.kinds[j] == REPLY):
                    newer = index.kinds[k] == REPLY  # the user's words, not the model's echo of them
                else:
                    newer = index.created[j] > index.created[k]  # said again: the latest wording stands
                if newer:
                    kept[same] = (j, words)
                    found[same] = replace(memory, score=max(score[j], found[same].score))
                continue
            kept.append((j, words))
            found.append(memory)
            if len(found) == top_k:
                break
        return found

    def score(self, actor_id: str, index: ActorIndex, query: str) -> Scored:
        """Every record of ``index`` scored for ``query``: the ranking and the relevance model's evidence."""
        w = self.weights
        named = find_names(query, index.names)
        text = (strip_names(query, named) or query) if named else query
        drop = {t for name in named for t in tokenize(name)}
        vector = self._vector_of(text) if w.dense > 0 else None  # embedded on the worker while keywords score
        terms = informative_terms(query_terms(text, drop), index.df, index.size)
        overlap = np.zeros(index.size, np.float64)  # filled by the same pass over the postings as bm25
        bm25 = best_only(bm25f(index, terms, w.columns, overlap), w.candidates)
        cosine = index.vectors @ vector() if vector is not None else np.zeros(index.size, np.float32)
        fused = fuse(bm25, cosine, w.dense)
        fused = boost_speaker(fused, index.speaker_ids, [index.speaker_codes[n] for n in named], w.speaker_boost)
        rank = smooth_neighbours(fused, index.prev_index, index.next_index, w.smooth) * KIND_WEIGHT[index.kinds]
        return Scored(rank, cosine, bm25, overlap)

    def query_vector(self, text: str) -> np.ndarray:
        """The embedding of ``text``, remembered for a while: it becomes the user message's record vector."""
        return self._vector_of(text)()

    def _vector_of(self, text: str) -> Callable[[], np.ndarray]:
        """Starts embedding ``text`` (urgent, on the embedding worker); call the result to wait for the vector."""
        with self._queries_lock:
            known = self._queries.get(text)
        if known is not None:
            return lambda: known
        future = self.embedder.submit(text)

        def result() -> np.ndarray:
            vector = future.result()
            with self._queries_lock:
                self._queries[text] = vector
                while len(self._queries) > self.query_cache_size:
                    self._queries.popitem(last=False)
            return vector

        return result

    def keyword_baseline(self, actor_id: str, query: str, top_k: int) -> list[int]:
        """Record ids of plain BM25 over the text column, query terms OR-ed (the benchmark's reference)."""
        hits = self.store.keyword_search(actor_id, fts_match(query_terms(query)), top_k, (1.0, 0, 0, 0, 0))
        return [rowid for rowid, _ in hits]

    # -- writing -----------------------------------------------------------------------------

    def record_exchange(self, actor_id: str, session_id: str, turn: int, user: str, reply: str,
                        created_at: float, generation: int, epoch: int | None = None) -> None:
        self.record_messages([
            MessageRecord(actor_id, session_id, turn, 0, "user", user, created_at, generation, epoch),
            MessageRecord(actor_id, session_id, turn, 1, "assistant", reply, created_at, generation, epoch),
        ])

    def record_messages(self, records: Sequence[MessageRecord]) -> None:
        """Queue records for the background writer (``record_exchange`` makes two; the benchmark one per turn)."""
        pending = []
        for record in records:
            if not record.text.strip():
                continue
            if record.epoch is None:
                record = _with_epoch(record, self.store.epoch(record.actor_id))
            vector = None
            if record.seq > 0 and not self.embed_replies:
                vector = NO_VECTOR  # the model's reply: found by its words, ranked below the user's statements
            elif not record.speaker:  # the embedded text is the message itself: a query vector may fit
                with self._queries_lock:
                    vector = self._queries.pop(record.text, None)
            pending.append(Pending(record, vector))
        self.writer.put(pending)

    def delete_session(self, actor_id: str, session_id: str, generation: int) -> int:
        return self.store.delete_session(actor_id, session_id, generation)

    def forget(self, actor_id: str) -> int:
        return self.store.forget(actor_id)

    def flush(self, timeout: float | None = None) -> bool:
        return self.writer.flush(timeout)

    def close(self) -> None:
        backlog = self.writer.backlog
        if backlog:
            logger.info("long-term memory: storing the %d records still queued before closing", backlog)
        self.writer.close()
        self.store.close()


def single_threaded_blas() -> None:
    """One BLAS thread: a search's matrix-vector product (10,000 x 384) takes 0.3 ms on one thread, while
    OpenBLAS's default pool spins on every core for it (8 ms of CPU, measured) and takes them from the requests."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _drain_at_exit(writer: weakref.ref[BackgroundWriter]) -> None:
    alive = writer()
    if alive is not None:
        if alive.backlog:
            logger.info("long-term memory: storing the %d records still queued before exiting", alive.backlog)
        alive.close()


def _with_epoch(record: MessageRecord, epoch: int) -> MessageRecord:
    from dataclasses import replace

    return replace(record, epoch=epoch)


def _allowed(index: ActorIndex, exclude: frozenset[tuple[str, int]] | set[tuple[str, int]]) -> np.ndarray | None:
    """A mask of the records not in ``exclude`` (None: nothing excluded)."""
    if not exclude:
        return None
    allowed = np.ones(index.size, bool)
    by_session: dict[int, list[int]] = {}
    for session_id, turn in exclude:
        code = index.session_codes.get(session_id)
        if code is not None:
            by_session.setdefault(code, []).append(turn)
    for code, turns in by_session.items():
        allowed &= ~((index.sessions == code) & np.isin(index.turns, turns))
    return allowed


def _top(scores: np.ndarray, k: int, allowed: np.ndarray | None) -> list[int]:
    return [int(j) for j in top_k(scores, k, allowed)]


def newest_first(index: ActorIndex, pool: list[int], relevance: np.ndarray,
                 top_k: int) -> tuple[list[int], dict[int, float]]:
    """The pool in ranking order, a newer statement of the same subject moved just above an older one.

    "We moved from Lisbon to Porto" updates "I live in Lisbon": when a statement among the first ``top_k``
    has newer statements of the same subject (cosine of their vectors in [``SAME_SUBJECT``,
    ``NEAR_DUPLICATE``)) among the first ``UPDATE_REACH`` of the pool, they go just above it, the newest
    first (at most ``UPDATE_PULLS`` of them from beyond ``top_k``), at least as relevant as the one they
    update. Only for records with no speaker name: one user's statements about their own life, where the
    newer one usually replaces the older. Between the two named speakers of a LoCoMo conversation, who
    come back to the same subjects all the time and are asked about an early event as often as about the
    latest, the same rule cost recall@5 0.71 -> 0.45 (measured; see docs/longterm.md). Near-duplicates
    are left to ``search``: they may differ in the one word the query asks for ("note 17" / "note 38").
    Returns the order (indexes into the index) and each one's score.
    """
    score = {j: float(p) for j, p in zip(pool, relevance)}
    reach = pool[:max(top_k, UPDATE_REACH)]
    statements = [j for j in reach if index.kinds[j] == STATEMENT and index.speaker_ids[j] == 0]
    if len(statements) < 2:
        return list(pool), score
    vectors = index.vectors[statements]
    similar = vectors @ vectors.T
    position = {j: n for n, j in enumerate(statements)}
    order: list[int] = []
    placed: set[int] = set()
    first = set(pool[:top_k])
    for j in pool[:top_k]:
        if j in placed:
            continue
        if j in position:
            row = similar[position[j]]
            newer = [k for k in statements if k not in placed and k != j and index.created[k] > index.created[j]
                     and SAME_SUBJECT <= row[position[k]] < NEAR_DUPLICATE]
            newer = sorted(newer, key=lambda k: -index.created[k])  # the newest first
            pulled = [k for k in newer if k not in first][:UPDATE_PULLS]
            for k in [k for k in newer if k in first or k in pulled]:
                score[k] = max(score[k], score[j])
                order.append(k)
                placed.add(k)
        order.append(j)
        placed.add(j)
    order += [j for j in pool if j not in placed]
    return order, score


def _near_duplicate(index: ActorIndex, a: int, b: int, words_a: frozenset[str], words_b: frozenset[str]) -> bool:
    """Two records that say the same thing: the model's echo of the user's words (mostly the same words), or
    two statements alike in their vectors that mostly repeat each other's words and numbers."""
    if index.kinds[a] == REPLY or index.kinds[b] == REPLY:  # a reply is not embedded: its words tell
        return repeats(words_a, words_b)
    return float(index.vectors[a] @ index.vectors[b]) >= NEAR_DUPLICATE and restates(words_a, words_b)
