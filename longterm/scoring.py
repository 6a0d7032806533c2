"""Scoring of long-term retrieval: pure numpy functions over one actor's records.

The recipe (tuned on the LoCoMo dev split, see ``docs/longterm.md``):

    fused = (1 - w_dense) * bm25 / max(bm25) + w_dense * minmax(cosine)
            + speaker_boost * [the record's speaker is the one participant the query names]
    final(i) = fused(i) + smooth * max(fused(prev(i)), fused(next(i)))   (neighbours in one session)

CombSUM of the two normalised scores beat reciprocal rank fusion (which throws
the scores' gaps away), and an answer is often split over two adjacent messages
("Did you go?" / "Yes, to Oslo in May"), which the neighbour term rewards.
The score a record is *reported* with (and ``LTM_MIN_SCORE`` applies to) is not
this one, which is relative to its query's best: it is ``longterm.relevance``'s
probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Weights:
    """Every tuned number of the recipe in one place (the benchmark prints them beside its figures)."""

    #: FTS5 ``bm25()`` column weights: text, caption, previous message, next message, date words
    columns: tuple[float, float, float, float, float] = (1.0, 0.5, 0.7, 0.5, 1.0)
    #: share of the dense (cosine) score in the fused score
    dense: float = 0.5
    #: added when the record's speaker is the one participant the query names
    speaker_boost: float = 0.3
    #: share of the better neighbour's fused score added to a record's own
    smooth: float = 0.2
    #: keyword candidates fetched from FTS5 per query (every other record counts as bm25 = 0)
    candidates: int = 200


DEFAULT_WEIGHTS = Weights()


def max_normalise(scores: np.ndarray) -> np.ndarray:
    """Scores divided by their maximum (all zero stays all zero): BM25 has no natural scale."""
    top = float(scores.max()) if scores.size else 0.0
    return scores / top if top > 0 else scores


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scores mapped onto [0, 1] by their own minimum and maximum."""
    if not scores.size:
        return scores
    low, high = float(scores.min()), float(scores.max())
    return (scores - low) / max(high - low, 1e-9)


def fuse(bm25: np.ndarray, cosine: np.ndarray, dense: float) -> np.ndarray:
    """CombSUM of max-normalised BM25 and min-max-normalised cosine."""
    return (1.0 - dense) * max_normalise(bm25) + dense * minmax(cosine)


def boost_speaker(scores: np.ndarray, speakers: np.ndarray, named: list[str], boost: float) -> np.ndarray:
    """Add ``boost`` to the records of the one speaker the query names (none or several: unchanged)."""
    if not boost or len(named) != 1 or not scores.size:
        return scores
    return scores + boost * (speakers == named[0])


def smooth_neighbours(scores: np.ndarray, prev_index: np.ndarray, next_index: np.ndarray,
                      smooth: float) -> np.ndarray:
    """Add ``smooth`` times the better neighbour's score; an index of -1 means no neighbour."""
    if not smooth or not scores.size:
        return scores
    padded = np.append(scores, 0.0)  # index -1 reads the 0 at the end
    return scores + smooth * np.maximum(padded[prev_index], padded[next_index])


def top_k(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Indexes of the ``k`` best scores, best first (ties: the earlier record), among ``allowed`` ones."""
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
        k = min(k, int(allowed.sum()))
    k = min(k, scores.size)
    if k <= 0:
        return np.zeros(0, np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.lexsort((part, -scores[part]))]
