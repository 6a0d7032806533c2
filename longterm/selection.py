"""What of a query's ranked records reaches the caller: the relevance threshold's places, updates first,
one record per fact.

``LocalLongTermMemory.search`` ranks an actor's records and computes each candidate's relevance
(``longterm.relevance``); these pure functions then decide what is returned, in three steps:

1. ``relevant_first`` (only with a ``min_score``, as the hooks search): records under it take no place, and
   what tells something (statements, replies) goes before what only asks or chats;
2. ``newest_first``: a newer statement of the same subject moves just above the one it updates;
3. ``one_per_fact``: near-duplicates (a fact said twice, the model's echo of it) collapse to one record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from longterm.base import Memory
from longterm.index import ActorIndex
from longterm.relevance import NEAR_DUPLICATE, REPLY, SAME_SUBJECT, STATEMENT, repeats, restates, words_of

#: how far down the ranking a newer statement of the same subject is looked for (``newest_first``): the pool's
#: first records and the query's best statements
UPDATE_REACH = 30
#: two statements that name the same thing are of one subject from this cosine on (``newest_first``)
NAMED_SUBJECT = 0.25
#: at most this many newer statements pulled in from beyond ``top_k`` per statement they update
UPDATE_PULLS = 1


def relevant_first(index: ActorIndex, pool: list[int], relevance: np.ndarray,
                   min_score: float) -> tuple[list[int], np.ndarray]:
    """The pool's records of at least ``min_score``, what tells something first, the most relevant first.

    The user's own records are ordered by relevance (a probability from absolute evidence: on the held-out
    set, hit rate 0.848 -> 0.869 and update cases 14 -> 15 of 18 against the ranking's order). A transcript
    of named speakers (LoCoMo) keeps the ranking's order, whose speaker boost and neighbour term the relevance
    model lacks: by relevance its delivered recall fell 0.665 -> 0.554.

    Before this, the best ``top_k`` by rank were taken and then cut by the threshold: five earlier
    questions sharing the query's words ("which city should I visit these days?") could take every place,
    and the statement that answers, ranked sixth, was never seen.
    """
    relevant = relevance >= min_score
    kept, relevance = [j for j, keep in zip(pool, relevant) if keep], relevance[relevant]
    kinds = index.kinds[kept]
    tells = (kinds == STATEMENT) | (kinds == REPLY)  # not ``np.isin``: its own overhead was most of this step
    if index.speaker_ids[kept].any():  # a transcript of named speakers: the ranking's order (see above)
        first = np.argsort(~tells, kind="stable")
    else:
        first = np.lexsort((-relevance, ~tells))
    return [kept[i] for i in first], relevance[first]


def newest_first(index: ActorIndex, pool: list[int], relevance: np.ndarray, top_k: int,
                 reach: Sequence[int] = ()) -> tuple[list[int], dict[int, float]]:
    """The pool in ranking order, a newer statement of the same subject moved just above an older one.

    "We moved from Lisbon to Porto" updates "I live in Lisbon": when a statement among the first ``top_k``
    has newer statements of the same subject among the pool's first ``UPDATE_REACH`` records or ``reach``
    (the query's best ``UPDATE_REACH`` statements: a crowd of earlier questions on the subject must not hide
    the update), they go just above it, the newest first (at most ``UPDATE_PULLS`` of them from beyond
    ``top_k``), at least as relevant as the one they update. Two statements are of the same subject when
    their vectors are close (cosine in [``SAME_SUBJECT``, ``NEAR_DUPLICATE``)), or when they name the same
    thing and are not far apart (cosine at least ``NAMED_SUBJECT``): "We sold the Fiat and now share a
    Renault Zoe" updates "I drive an old blue Fiat Panda" (cosine 0.34). Only for records with no speaker
    name: one user's statements about their own life, where the newer one usually replaces the older.
    Between the two named speakers of a LoCoMo conversation, who come back to the same subjects all the time
    and are asked about an early event as often as about the latest, the same rule cost recall@5 0.71 -> 0.45
    (measured; see docs/longterm.md). Near-duplicates are left to ``search``: they may differ in the one word
    the query asks for ("note 17" / "note 38"). Returns the order (indexes into the index) and each one's
    score.
    """
    score = {j: float(p) for j, p in zip(pool, relevance)}
    candidates = list(dict.fromkeys([*pool[:max(top_k, UPDATE_REACH)], *reach]))
    statements = [j for j in candidates if index.kinds[j] == STATEMENT and index.speaker_ids[j] == 0]
    if len(statements) < 2:
        return list(pool), score
    vectors = index.vectors_of(statements)
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
            names = index.names_of.get(j, frozenset())
            newer = [k for k in statements if k not in placed and k != j and index.created[k] > index.created[j]
                     and _same_subject(float(row[position[k]]), names, index.names_of.get(k, frozenset()))]
            newer = sorted(newer, key=lambda k: -index.created[k])  # the newest first
            pulled = [k for k in newer if k not in first][:UPDATE_PULLS]
            for k in [k for k in newer if k in first or k in pulled]:
                score[k] = max(score.get(k, 0.0), score[j])
                order.append(k)
                placed.add(k)
        order.append(j)
        placed.add(j)
    order += [j for j in pool if j not in placed]
    return order, score


def _same_subject(cosine: float, names: frozenset[str], other: frozenset[str]) -> bool:
    """Whether two statements (their cosine, the names each one mentions) are about the same subject."""
    if cosine >= NEAR_DUPLICATE:
        return False  # the same thing said again: near-duplicates are collapsed, not ordered
    return cosine >= SAME_SUBJECT or (cosine >= NAMED_SUBJECT and bool(names & other))


def _near_duplicate(index: ActorIndex, a: int, b: int, words_a: frozenset[str], words_b: frozenset[str]) -> bool:
    """Two records that say the same thing: the model's echo of the user's words (mostly the same words), or
    two statements alike in their vectors that mostly repeat each other's words and numbers."""
    if index.kinds[a] == REPLY or index.kinds[b] == REPLY:  # a reply is not embedded: its words tell
        return repeats(words_a, words_b)
    pair = index.vectors_of([a, b])
    return float(pair[0] @ pair[1]) >= NEAR_DUPLICATE and restates(words_a, words_b)


def one_per_fact(index: ActorIndex, order: Sequence[int], score: Mapping[int, float], rows: Mapping[int, object],
                 asked: frozenset[str], top_k: int) -> list[Memory]:
    """The first ``top_k`` records of ``order`` that ``rows`` holds (record id -> the stored row), one per fact.

    A record that says what a kept one says (``_near_duplicate``), in the words the query asks about (``asked``),
    is left out; the user's words stand over the model's echo of them, else the latest wording.
    """
    found: list[Memory] = []
    kept: list[tuple[int, frozenset[str]]] = []
    for j in order:
        row = rows.get(int(index.ids[j]))
        if row is None:  # deleted since the index was read, or beyond what was read
            continue
        words = words_of(row.text)
        memory = Memory(row.text, row.session_id, row.turn, score[j], row.created_at, row.token, row.role)
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
