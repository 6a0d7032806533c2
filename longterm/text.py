"""Text helpers of long-term retrieval: pure functions, no I/O.

How a query becomes an FTS5 ``MATCH`` expression, how a record's creation time
becomes the words a question quotes ("8 May 2023"), and what text of a record
is embedded. Measured on LoCoMo (see ``docs/longterm.md``): OR-ing the query's
content words beats AND-ing them (0.61 vs 0.11 recall@10), stop words only
add noise, and participant names are better used as a speaker filter than as
search terms.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

import snowballstemmer

# the one token estimate; imported from here by the long-term hooks
from core.tokens import estimate_tokens  # noqa: F401

#: English function words: dropped from keyword queries (they match nearly every record)
STOPWORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves what which who whom this that these those am is
are was were be been being have has had having do does did doing a an the and but if or because as until
while of at by for with about against between into through during before after above below to from up down
in out on off over under again further then once here there when where why how all any both each few more
most other some such no nor not only own same so than too very s t can will just don should now
would could might may must shall also ever yet
""".split())

#: a query longer than this many distinct terms keeps only its first ones (a pasted document is not a query)
MAX_QUERY_TERMS = 48

_TOKEN = re.compile(r"[a-z0-9]+")
_WORD = re.compile(r"[^\W_]+")
_SPACES = re.compile(r"\s+")


def tokenize(text: str) -> list[str]:
    """Lower-case letter and digit runs, accents removed: the split FTS5's ``unicode61`` tokenizer makes."""
    text = text.lower()
    if text.isascii():
        return _TOKEN.findall(text)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return _WORD.findall(text)


def query_terms(text: str, drop: Iterable[str] = (), max_terms: int = MAX_QUERY_TERMS) -> list[str]:
    """The query's distinct content words, in order: stop words and ``drop`` left out."""
    dropped = STOPWORDS | set(drop)
    terms: list[str] = []
    for token in tokenize(text):
        if token not in dropped and token not in terms:
            terms.append(token)
            if len(terms) == max_terms:
                break
    return terms


#: an actor needs this many records before common terms are dropped from its keyword queries
PRUNE_FROM_RECORDS = 200
#: a term in more than this share of the actor's records is dropped: it weighs little in BM25 and makes
#: FTS5 score many records (on the dev split 0.2 left recall as it was and cut FTS5 time, see docs/longterm.md)
PRUNE_SHARE = 0.2
#: at most this many terms, the rarest, go into one keyword query
MAX_MATCH_TERMS = 24
#: the rarest terms are kept while the expected (records matched x terms) stays under this; at least one
#: term is always kept. Chosen when FTS5 scored the keywords (about 1 us per record and term there); kept
#: with the in-memory BM25F (``longterm.keyword``), whose cost grows the same way, so ranking is unchanged
MATCH_BUDGET = 6_000

_stemmer = snowballstemmer.stemmer("porter")
_stemmer_lock = threading.Lock()


#: FTS5's ``porter`` tokenizer leaves tokens shorter or longer than these as they are ("us" stays "us")
STEM_LENGTHS = (3, 64)


@functools.lru_cache(maxsize=100_000)
def stem(word: str) -> str:
    """The Porter stem FTS5's ``porter`` tokenizer indexes for ``word`` (the stemmer object is not thread-safe)."""
    if not STEM_LENGTHS[0] <= len(word) <= STEM_LENGTHS[1]:
        return word
    with _stemmer_lock:
        return _stemmer.stemWord(word)


def informative_terms(terms: Sequence[str], df: Mapping[str, int], records: int,
                      max_terms: int = MAX_MATCH_TERMS, budget: int = MATCH_BUDGET) -> list[str]:
    """The query terms worth a keyword search, in their order: the rarest, within a cost budget.

    Keyword scoring visits every record a query matches, for every term, so the cost of a search is about
    (records matched) x (terms). Terms in more than ``PRUNE_SHARE`` of the actor's records weigh little
    in BM25 (a low inverse document frequency) and are dropped; of the rest, the rarest
    are kept while the expected matches x terms stays within ``budget`` (a long message of common
    words otherwise made every search score every record of the actor, 120 ms at 16,000 records).
    ``df``: stem -> how many of the actor's records contain it.
    """
    if records < PRUNE_FROM_RECORDS:
        return list(terms[:max_terms])
    frequency = {t: df.get(stem(t), 0) for t in terms}
    keep: set[str] = set()
    missed = 1.0  # the share of records no kept term matches (terms taken as independent)
    for term in sorted((t for t in terms if frequency[t] <= PRUNE_SHARE * records), key=frequency.__getitem__):
        share = missed * (1 - frequency[term] / records)
        if keep and (len(keep) == max_terms or (1 - share) * records * (len(keep) + 1) > budget):
            break
        keep.add(term)
        missed = share
    return [t for t in terms if t in keep]


def fts_match(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression OR-ing ``terms``, each quoted (so no term is read as FTS5 syntax)."""
    return " OR ".join(f'"{t}"' for t in terms)


def find_names(text: str, names: Iterable[str]) -> list[str]:
    """The speaker names ``text`` mentions as whole words (case-insensitive)."""
    return [n for n in names if n and re.search(r"\b" + re.escape(n) + r"\b", text, re.IGNORECASE)]


def strip_names(text: str, names: Iterable[str]) -> str:
    """``text`` without the given names (and a possessive 's after them)."""
    for name in names:
        text = re.sub(r"\b" + re.escape(name) + r"(?:'s|\u2019s)?\b", " ", text, flags=re.IGNORECASE)
    return _SPACES.sub(" ", text).strip()


_WORDS_AND_STOPS = re.compile(r"[^\W\d_][^\W_]*|[.!?]")


def proper_names(text: str) -> frozenset[str]:
    """The stems of the names in ``text``: capitalised words that do not begin a sentence ("I drive a **Fiat**",
    "we moved from **Lisbon** to **Porto**"), "I" aside. Two statements naming the same thing are about it."""
    names = []
    starts = True
    for word in _WORDS_AND_STOPS.findall(text):
        if word in ".!?":
            starts = True
            continue
        if not starts and word[0].isupper() and word not in ("I", "I'm", "I've"):
            names.extend(stem(t) for t in tokenize(word))
        starts = False
    return frozenset(n for n in names if n not in STOPWORDS)


def date_words(created_at: float) -> str:
    """A record's day as questions quote it: ``8 May 2023`` (UTC)."""
    day = datetime.fromtimestamp(created_at, tz=timezone.utc)
    return f"{day.day} {day:%B} {day.year}"


def iso_time(created_at: float) -> str:
    """``2023-05-08T13:56:00Z``: how records' times are shown to callers and to the model."""
    return datetime.fromtimestamp(created_at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def embedded_text(speaker: str, text: str) -> str:
    """What is embedded for a record: ``speaker: text`` (the speaker name helps the dense model)."""
    return f"{speaker}: {text}" if speaker else text
