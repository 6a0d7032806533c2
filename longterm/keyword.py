"""BM25F over one actor's records, in numpy, from the actor's in-memory inverted index.

The same formula as FTS5's ``bm25()`` (Okapi BM25, k1 = 1.2, b = 0.75, a term's
frequency weighted per column), over the same five columns the FTS5 index has:
the record's text, its caption, the previous and next message of its session,
and its day in words. Two differences, both deliberate:

- the statistics (record count, a term's document frequency, the mean record
  length) are the actor's own, where FTS5 counts every actor of the file: one
  actor's ranking no longer depends on what other actors said;
- nothing is read from SQLite: the previous and next message's terms are the
  neighbours' text postings, through the index's neighbour links.

Why not FTS5: its ``bm25()`` is evaluated for every record a query matches,
once per term (about 1 us each here): with 10,000 records for the actor a
query cost 3-4 ms of CPU in FTS5; here it costs the postings of its terms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from longterm.index import CAPTION, COLUMN_BITS, DAY, TEXT, ActorIndex
from longterm.text import stem

K1 = 1.2
B = 0.75
#: FTS5's floor for the inverse document frequency of a term in more than half of the records
MIN_IDF = 1e-6


def bm25f(index: ActorIndex, terms: Sequence[str], weights: Sequence[float],
          overlap: np.ndarray | None = None, aliases: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
    """Positive BM25F of every record of ``index`` for ``terms`` (0: no term matched).

    ``weights``: text, caption, previous message, next message, day. A term is one phrase of
    the query, as in an FTS5 OR-query of quoted terms: two words with one stem count twice.
    ``overlap`` (an array of the index's size, zeros): filled in the same pass over the postings with
    the share of the query's distinct stems, weighted by rarity, that each record's own text contains
    (``longterm.relevance``'s lexical evidence). ``aliases``: stem -> other stems that count as it
    ("brother" -> ["declan"]: a record naming Declan contains the query's "brother").
    """
    n = index.size
    scores = np.zeros(n, np.float64)
    if not n or not terms:
        return scores
    seen: set[str] = set()
    total = 0.0
    lengths = index.record_lengths  # tokens per record over all five columns (and FTS5's owner token)
    norm = K1 * (1 - B + B * lengths / lengths.mean())
    w_text, w_caption, w_prev, w_next, w_day = (float(w) for w in weights)
    own = {TEXT: w_text, CAPTION: w_caption, DAY: w_day}
    for term in terms:
        stemmed = stem(term)
        records, columns, counts = postings_of(index, stemmed, aliases.get(stemmed, ()) if aliases else ())
        if overlap is not None and stemmed not in seen:
            seen.add(stemmed)
            in_text_only = records[columns == TEXT]  # one posting per record and column, aliases merged
            weight = overlap_weight(n, in_text_only.size)
            total += weight
            overlap[in_text_only] += weight
        if not records.size:
            continue
        frequency = np.zeros(n, np.float64)
        for column, weight in own.items():
            if weight > 0:
                at = columns == column
                frequency[records[at]] += weight * counts[at]  # one posting per record and column: no repeats
        in_text = columns == TEXT
        for links, weight in ((index.next_index, w_prev), (index.prev_index, w_next)):
            if weight > 0:  # a message's text is its successor's "previous message" and its predecessor's "next"
                neighbours = links[records[in_text]]
                has = neighbours >= 0
                frequency[neighbours[has]] += weight * counts[in_text][has]
        matched = np.flatnonzero(frequency)
        if not matched.size:
            continue
        idf = max(math.log((n - matched.size + 0.5) / (matched.size + 0.5)), MIN_IDF)
        f = frequency[matched]
        scores[matched] += idf * f * (K1 + 1) / (f + norm[matched])
    if overlap is not None and total:
        overlap /= total
    return scores


def postings_of(index: ActorIndex, stemmed: str, aliases: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(records, columns, counts) of ``stemmed`` and of its aliases, as if they were one word. A record holding
    two of them in one column counts once there (the first's count): the scoring adds by fancy indexing."""
    found = [index.postings(s) for s in (stemmed, *aliases)]
    if len(found) == 1:
        return found[0]
    records, columns, counts = (np.concatenate(parts) for parts in zip(*found))
    _, first = np.unique(records << COLUMN_BITS | columns, return_index=True)  # one posting per record and column
    return records[first], columns[first], counts[first]


def overlap_weight(records: int, containing: int) -> float:
    """A query stem's weight in the text overlap: its rarity among the actor's records, at least 0.5."""
    return max(math.log((records + 1) / (containing + 0.5)), 0.5)


def best_only(scores: np.ndarray, candidates: int) -> np.ndarray:
    """``scores`` with all but the best ``candidates`` set to 0 (FTS5 returned only its top candidates)."""
    matched = np.flatnonzero(scores)
    if matched.size <= candidates:
        return scores
    values = scores[matched]
    cut = np.partition(values, values.size - candidates)[values.size - candidates]
    out = np.zeros_like(scores)
    keep = values >= cut
    out[matched[keep]] = values[keep]
    return out
