"""The reference keyword index: SQLite FTS5's BM25 over the records, built by the benchmark, not the product.

Two uses, both outside the request path:

- **the baseline** long-term recall is measured against (``bench/ltm_recall.py``): plain BM25 over a record's
  text, query terms OR-ed;
- **the reference** for the product's keyword scores: ``longterm.keyword.bm25f`` computes FTS5's ``bm25()``
  in numpy over the same five columns (the text, the caption, the previous and next message of the session,
  the day in words) from the actor's in-memory terms; ``tests/test_longterm_retrieval.py`` checks it against
  this index.

The product kept such an index in its own file until migration 4 of ``longterm.sqlite_schema`` dropped it:
nothing it served ran on the request path, and it cost every write 0.3 ms. One in-memory SQLite database; an
``owner`` column restricts a MATCH to one actor, as the product's did.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Hashable, Iterable, Sequence

from longterm.base import MessageRecord
from longterm.text import date_words, fts_match, query_terms

#: the indexed columns, in the order of ``bm25f``'s weights
COLUMNS = ("text", "caption", "prev", "next", "date")
#: BM25 weights of the columns: the text column only (the baseline)
TEXT_ONLY = (1.0, 0, 0, 0, 0)


def owner_token(actor_id: str) -> str:
    """The actor as one FTS token: hex (the tokenizer keeps it whole), ending in x (porter leaves it alone)."""
    return "a" + actor_id.encode("utf-8").hex() + "x"


class KeywordIndex:
    """FTS5 (porter, unicode61) over records, each found by the key the caller gives it."""

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:")
        self._db.execute(f"CREATE VIRTUAL TABLE fts USING fts5({', '.join(COLUMNS)}, owner, "
                         "tokenize='porter unicode61')")
        self._keys: list[Hashable] = []

    def add(self, records: Iterable[tuple[Hashable, MessageRecord]]) -> None:
        """Index ``(key, record)`` pairs, each with its session neighbours' text (same generation) as context.

        The neighbours are those among the records given in this call: add a conversation's records at once.
        """
        given = list(records)
        by_session: dict[tuple[str, str, int], list[tuple[int, int, int]]] = {}
        for n, (_, r) in enumerate(given):
            by_session.setdefault((r.actor_id, r.session_id, r.generation), []).append((r.turn, r.seq, n))
        context: dict[int, tuple[str, str]] = {}
        for ordered in by_session.values():
            ordered.sort()
            texts = [given[n][1].text for _, _, n in ordered]
            for i, (_, _, n) in enumerate(ordered):
                context[n] = (texts[i - 1] if i else "", texts[i + 1] if i + 1 < len(texts) else "")
        with self._db:
            for n, (key, r) in enumerate(given):
                self._keys.append(key)
                self._db.execute("INSERT INTO fts (rowid, text, caption, prev, next, date, owner) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (len(self._keys), r.text, r.caption, *context[n], date_words(r.created_at),
                                  owner_token(r.actor_id)))

    def search(self, actor_id: str, match: str, limit: int, weights: Sequence[float]) -> list[tuple[Hashable, float]]:
        """(key, positive BM25) of the actor's records matching ``match`` (an FTS5 expression), best first.
        A weight of 0 leaves that column out of the MATCH too."""
        if not match:
            return []
        columns = " ".join(c for c, w in zip(COLUMNS, weights) if w > 0)
        expression = f'owner : "{owner_token(actor_id)}" AND {{{columns}}} : ({match})'
        rank = ", ".join(str(float(w)) for w in weights) + ", 0"  # owner weighs nothing
        rows = self._db.execute(f"SELECT rowid, bm25(fts, {rank}) AS s FROM fts WHERE fts MATCH ? ORDER BY s LIMIT ?",
                                (expression, limit)).fetchall()
        return [(self._keys[rowid - 1], -score) for rowid, score in rows]

    def close(self) -> None:
        self._db.close()


def keyword_baseline(index: KeywordIndex, actor_id: str, query: str, top_k: int) -> list[Hashable]:
    """Keys of plain BM25 over the text column, query terms OR-ed (the benchmark's reference)."""
    return [key for key, _ in index.search(actor_id, fts_match(query_terms(query)), top_k, TEXT_ONLY)]
