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
   ``LTM_MIN_SCORE`` applies to: with ``min_score``, as the hooks search, only records at
   or above it keep a place, statements and replies before questions and small talk),
   a newer statement of the same subject moves above an older one (looked for among the
   query's best 30 statements too), near-duplicates collapse, and the best ``top_k``
   are read back (``longterm.selection``).

Writing: ``record_exchange`` stores two records (the user's message and the
reply) in one transaction on the request path: their text is durable and
keyword-searchable before the reply is acknowledged. The query vector of the
user's message, computed by the search before the model call, is stored with
it; the reply is not embedded (``EMBED_REPLIES``: found by its words), so a
turn costs one embedding. A user's record stored without a vector (its query
vector no longer at hand) is embedded by the background writer and ranked by
its keywords alone until then. A restart embeds what an earlier process left
without vectors; ``close()`` embeds for at most ``LTM_DRAIN_S`` seconds and
leaves the rest.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import InvalidCursor
from longterm.base import LongTermMemory, Memory, MemoryPage, MessageRecord
from longterm.embedding import DIMENSIONS, URGENT, Embedder
from longterm.relevance import (CHATTER, KIND_WEIGHT, STATEMENT, about_the_asker, features, probability, record_kind,
                                 words_of)
from longterm.selection import UPDATE_REACH, newest_first, one_per_fact, relevant_first
from longterm.scoring import DEFAULT_WEIGHTS, Weights, boost_speaker, fuse, max_normalise, smooth_neighbours, top_k
from longterm.index import ActorIndex
from longterm.keyword import best_only, bm25f
from longterm.sqlite_store import SQLiteLongTermStore
from longterm.relatives import aliases, with_names
from longterm import occupation
from longterm.text import embedded_text, find_names, informative_terms, query_terms, strip_names, tokenize
from longterm.writer import BackgroundWriter

logger = logging.getLogger(__name__)

#: query vectors remembered for reuse as the user message's record vector
QUERY_VECTORS = 512
#: the background writer's texts on the embedding thread: ahead of the queries (see ``__init__``)
WRITER_PRIORITY = URGENT - 1
#: seconds ``close()`` spends embedding records still without vectors (``LTM_DRAIN_S``)
DRAIN_S = 3.0
#: the model's replies (the second record of an exchange) are not embedded: see docs/longterm.md, "Cost"
EMBED_REPLIES = False
#: the vector of a record that is not embedded: its cosine with every query is 0
NO_VECTOR = np.zeros(DIMENSIONS, np.float32)
#: records ranked before the relevance model and the update rule look at them (a newer statement of the same
#: subject is looked for among these)
POOL = 30
#: records read back beyond ``top_k``, to fill the places of near-duplicates left out
DUPLICATE_SLACK = 5


@dataclass(frozen=True)
class Scored:
    """One query's evidence over an actor's records (arrays of the index's size)."""

    rank: np.ndarray  # the ranking score: fused, boosted, smoothed, times the kind's weight
    cosine: np.ndarray
    bm25: np.ndarray
    overlap: np.ndarray  # the share of the query's words the record's text contains
    about_asker: bool  # the query is about the asker's own life (``relevance.about_the_asker``)


class LocalLongTermMemory(LongTermMemory):
    """Long-term memory in a ``SQLiteLongTermStore``, embedded with ``Embedder``."""

    def __init__(self, store: SQLiteLongTermStore, embedder: Embedder, weights: Weights = DEFAULT_WEIGHTS, *,
                 drain_s: float = DRAIN_S) -> None:
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
        self.drain_s = drain_s
        #: records stored, and refused (deleted meanwhile, or stored already) by ``record_messages``
        self.stored = 0
        self.refused = 0
        self._closed = False
        self._close_lock = threading.Lock()
        # the writer's next text goes before the queries waiting: it sends one text at a time, so a query still
        # waits for at most one of them, and the writer gets every other slot of the embedding thread when
        # both are busy. Behind the queries it starved under 8 clients (vectors 3-19 s after the reply) while
        # each turn added one more text to embed
        self.writer = BackgroundWriter(lambda texts: embedder.embed(texts, WRITER_PRIORITY), store.unembedded,
                                       store.add_vectors, lambda r: embedded_text(r.speaker, r.text))
        # the last resort of a clean shutdown: an interpreter that exits without close() still embeds (bounded)
        atexit.register(_close_at_exit, weakref.ref(self))

    def describe(self) -> str:
        return (f"kept in SQLite ({self.store.where}), text stored with the turn, vectors added by a background "
                "thread, searched by BM25 + MiniLM")

    # -- reading -----------------------------------------------------------------------------

    def epoch(self, actor_id: str) -> int:
        return self.store.epoch(actor_id)

    def search(self, actor_id: str, query: str, top_k: int,
               exclude: frozenset[tuple[str, int]] | set[tuple[str, int]] = frozenset(),
               min_score: float = 0.0) -> list[Memory]:
        index = self.store.actor_index(actor_id)
        if not index.size or top_k <= 0 or not query.strip():
            return []  # an actor with no records costs one indexed read, no embedding
        if min_score > 0 and record_kind(query) == CHATTER:
            return []  # "hello", "thanks!", "ok": nothing in memory answers small talk (and no embedding is spent)
        scored = self.score(actor_id, index, query)
        allowed = _allowed(index, exclude)
        pool = _top(scored.rank, max(top_k, POOL), allowed)
        relevance = probability(features(scored.cosine[pool], scored.overlap[pool], scored.bm25[pool],
                                         index.kinds[pool], scored.about_asker))
        if min_score > 0:
            pool, relevance = relevant_first(index, pool, relevance, min_score)
            if not pool:
                return []
        statements = (index.kinds == STATEMENT) & (index.speaker_ids == 0)
        reach = _top(scored.rank, UPDATE_REACH, statements if allowed is None else statements & allowed)
        order, score = newest_first(index, pool, relevance, top_k, reach)
        rows = self.store.fetch(actor_id, [int(index.ids[j]) for j in order[:top_k + DUPLICATE_SLACK]])
        return one_per_fact(index, order, score, rows, words_of(query), top_k)

    def score(self, actor_id: str, index: ActorIndex, query: str) -> Scored:
        """Every record of ``index`` scored for ``query``: the ranking and the relevance model's evidence."""
        w = self.weights
        named = find_names(query, index.names)
        text = (strip_names(query, named) or query) if named else query
        drop = {t for name in named for t in tokenize(name)}
        # "my brother" is also the name the actor gave him ("Declan just got engaged", ``longterm.relatives``): in
        # the text embedded (then not the message's own, so its record's vector is the writer's to make) and in
        # the keywords (a record naming Declan contains "brother")
        vector = self._vector_of(with_names(text, index.relatives_of)) if w.dense > 0 else None
        terms = informative_terms(query_terms(text, drop), index.df, index.size)
        overlap = np.zeros(index.size, np.float64)  # filled by the same pass over the postings as bm25
        # "my brother" counts the names the actor gave him; "what do I do for a living?" counts the statement
        # in which the user said what they do (``longterm.occupation``)
        alias = {**aliases(text, terms, index.relatives_of), **occupation.aliases(query, terms)}
        bm25 = best_only(bm25f(index, terms, w.columns, overlap, alias), w.candidates)
        cosine = index.cosines(vector()) if vector is not None else np.zeros(index.size, np.float32)
        fused = fuse_where_missing(bm25, cosine, index.has_vector, w.dense)
        fused = boost_speaker(fused, index.speaker_ids, [index.speaker_codes[n] for n in named], w.speaker_boost)
        rank = smooth_neighbours(fused, index.prev_index, index.next_index, w.smooth) * KIND_WEIGHT[index.kinds]
        return Scored(rank, cosine, bm25, overlap, about_the_asker(query, index.df, named, index.name_stems))

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

    def record_messages(self, records: Sequence[MessageRecord]) -> list[str | None]:
        """Store records now (one transaction; ``record_exchange`` makes two, the benchmark one per turn);
        their vectors follow from the background writer. Per record its public id, or None (not stored)."""
        kept, vectors = [], []
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
            kept.append(record)
            vectors.append(vector)
        if not kept:
            return []
        tokens = self.store.insert(kept, vectors)
        stored = sum(t is not None for t in tokens)
        self.stored += stored
        self.refused += len(tokens) - stored
        if any(t is not None and v is None for t, v in zip(tokens, vectors)):
            self.writer.wake()
        return tokens

    def delete_session(self, actor_id: str, session_id: str, generation: int) -> int:
        return self.store.delete_session(actor_id, session_id, generation)

    def forget(self, actor_id: str) -> int:
        return self.store.forget(actor_id)

    def delete_record(self, actor_id: str, record_id: str) -> bool:
        if not isinstance(record_id, str) or not record_id:
            return False
        return self.store.delete_record(actor_id, record_id)

    def list_records(self, actor_id: str, limit: int = 50, cursor: str | None = None) -> MemoryPage:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        page = self.store.list_records(actor_id, limit, decode_position(cursor))
        records = [Memory(r.text, r.session_id, r.turn, 1.0, r.created_at, r.token, r.role) for r in page.records]
        return MemoryPage(records, None if page.next_below is None else encode_position(page.next_below))

    def flush(self, timeout: float | None = None) -> bool:
        return self.writer.flush(timeout)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        started, embedded = time.monotonic(), self.writer.embedded
        self.writer.close(self.drain_s)
        try:
            left = self.store.count_unembedded()
        except Exception as e:  # the file is gone: nothing more to say about it
            left = -1
            logger.warning("long-term memory: counting the records without vectors failed: %s: %s",
                           type(e).__name__, e)
        logger.info("long-term memory: closed in %.1f s (drain bound %.1f s) | vectors added while closing: %d | "
                    "records left without vectors: %s (their text is stored; the next start embeds them)",
                    time.monotonic() - started, self.drain_s, self.writer.embedded - embedded,
                    "unknown" if left < 0 else left)
        self.store.close()


def single_threaded_blas() -> None:
    """One BLAS thread: a search's matrix-vector product (10,000 x 384) takes 0.3 ms on one thread, while
    OpenBLAS's default pool spins on every core for it (8 ms of CPU, measured) and takes them from the requests."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _close_at_exit(ltm: weakref.ref[LocalLongTermMemory]) -> None:
    alive = ltm()
    if alive is not None:
        alive.close()


def fuse_where_missing(bm25: np.ndarray, cosine: np.ndarray, has_vector: np.ndarray | None,
                       dense: float) -> np.ndarray:
    """The fused score, for records still without their vector too: those are ranked by their keywords
    alone, at full weight (a fresh record that matches every keyword must not tie with an unrelated record
    that is merely the closest by meaning); their cosine (0) takes no part in the others' normalisation."""
    if has_vector is None or not cosine.size:
        return fuse(bm25, cosine, dense)
    present = cosine[has_vector]
    fused = fuse(bm25, np.where(has_vector, cosine, present.min() if present.size else 0.0), dense)
    return np.where(has_vector, fused, max_normalise(bm25))


def encode_position(actor_seq: int) -> str:
    """A ``list_records`` cursor: the actor's own record number (it says nothing about other actors)."""
    return f"r{actor_seq}"


def decode_position(cursor: str | None) -> int | None:
    """The position in a ``list_records`` cursor; ``InvalidCursor`` (400) for one this code did not issue."""
    if cursor is None:
        return None
    if not isinstance(cursor, str) or not cursor.startswith("r") or not cursor[1:].isascii() \
            or not cursor[1:].isdigit() or len(cursor) > 20:
        raise InvalidCursor("'cursor' is not a cursor this server issued; leave it out to start from the newest record")
    return int(cursor[1:])


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
        # the turns are compared with the session's own records only (a few dozen, not the actor's thousands), all
        # at once: ``np.isin`` cost 0.13-0.2 ms of every turn's search (its own overhead, whatever the size)
        rows = np.flatnonzero(index.sessions == code)
        allowed[rows[(index.turns[rows, None] == np.asarray(turns)).any(axis=1)]] = False
    return allowed


def _top(scores: np.ndarray, k: int, allowed: np.ndarray | None) -> list[int]:
    return [int(j) for j in top_k(scores, k, allowed)]
