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
3. the two are fused, boosted and smoothed (``longterm.scoring``), the excluded
   turns are masked, and the best ``top_k`` are read back with a calibrated score.

Writing: ``record_exchange`` queues two records (the user's message and the
reply) for the background writer, which embeds and stores them. The query
vector of the user's message, computed by the search before the model call,
is reused as that message's record vector, so the writer embeds only the reply.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from longterm.base import LongTermMemory, Memory, MessageRecord
from longterm.embedding import Embedder
from longterm.scoring import DEFAULT_WEIGHTS, Weights, boost_speaker, calibrate, fuse, smooth_neighbours, top_k
from longterm.index import ActorIndex
from longterm.keyword import best_only, bm25f
from longterm.sqlite_store import SQLiteLongTermStore
from longterm.text import (embedded_text, find_names, informative_terms, query_terms, strip_names,
                           tokenize)
from longterm.writer import BackgroundWriter, Pending

logger = logging.getLogger(__name__)

#: query vectors remembered for reuse as the user message's record vector
QUERY_VECTORS = 512


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
        scores, cosine, bm25 = self.score(actor_id, index, query)
        best = _top(scores, top_k, _allowed(index, exclude))
        rows = self.store.fetch(actor_id, [int(index.ids[j]) for j in best])
        found = []
        for j in best:
            row = rows.get(int(index.ids[j]))
            if row is None:  # deleted since the index was read
                continue
            found.append(Memory(row.text, row.session_id, row.turn, calibrate(float(cosine[j]), float(bm25[j])),
                                row.created_at, str(row.id), row.role))
        return found

    def score(self, actor_id: str, index: ActorIndex, query: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(final score, cosine, bm25) of every record of ``index`` for ``query``."""
        w = self.weights
        named = find_names(query, index.names)
        text = (strip_names(query, named) or query) if named else query
        drop = {t for name in named for t in tokenize(name)}
        vector = self._vector_of(text) if w.dense > 0 else None  # embedded on the worker while keywords score
        terms = informative_terms(query_terms(text, drop), index.df, index.size)
        bm25 = best_only(bm25f(index, terms, w.columns), w.candidates)
        cosine = index.vectors @ vector() if vector is not None else np.zeros(index.size, np.float32)
        fused = fuse(bm25, cosine, w.dense)
        fused = boost_speaker(fused, index.speaker_ids, [index.speaker_codes[n] for n in named], w.speaker_boost)
        return smooth_neighbours(fused, index.prev_index, index.next_index, w.smooth), cosine, bm25

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
            if not record.speaker:  # the embedded text is the message itself: a query vector may fit
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
