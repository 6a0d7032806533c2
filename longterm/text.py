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
from collections.abc import Collection, Iterable, Mapping, Sequence
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


#: the words by which people name someone (or a pet) by their relation to them: "my brother Declan"
RELATIONS = frozenset("""
wife husband hubby missus partner boyfriend girlfriend fiance fiancee spouse son daughter kid kids child children
baby twins brother bro sister sis sibling mum mom mam mother amma dad father appa parent grandma grandmother grandad
grandpa grandfather nan granny aunt auntie uncle cousin nephew niece stepson stepdaughter friend mate buddy pal
bestie boss manager supervisor colleague coworker flatmate roommate housemate neighbour neighbor landlord landlady
teacher tutor doctor gp dentist therapist physio coach trainer vet childminder nanny babysitter dog cat puppy pup
kitten pet horse pony rabbit hamster parrot
""".split())
#: words for one relation: a query may say "my mom" of the mother a statement called "my amma Lakshmi"
_SAME_RELATION = ("kid kids child children", "son sons boy boys", "daughter daughters girl girls", "twin twins",
                  "baby babies", "wife missus", "husband hubby", "partner spouse", "mum mom mam mother amma mummy",
                  "dad father appa papa daddy", "parent parents folks", "brother bro", "sister sis",
                  "sibling siblings", "friend mate buddy pal bestie", "boss manager supervisor", "doctor gp",
                  "dog dogs puppy pup", "cat cats kitten", "pet pets", "grandma grandmother nan nana granny gran",
                  "grandad grandpa grandfather")
#: relations a wider word covers: "how many children do I have?" asks about "my twins, Arjun and Kiran", and
#: "where's my mum?" about "my parents live in Faro"
_COVERS = {"kids": "son daughter twin baby", "partner": "wife husband boyfriend girlfriend fiance fiancee",
           "parent": "mum dad", "sibling": "brother sister", "pet": "dog cat rabbit hamster parrot horse pony",
           "son": "twin", "daughter": "twin"}


def _relation_table() -> dict[str, frozenset[str]]:
    """stem -> the stems of every relation word it covers (itself, its synonyms, what a wider word covers)."""
    group_of = {word: group.split() for group in _SAME_RELATION for word in group.split()}
    table: dict[str, frozenset[str]] = {}
    for word in RELATIONS | set(group_of):
        group = group_of.get(word, [word])
        words = set(group)
        for wider, covered in _COVERS.items():
            narrower = [w for n in covered.split() for w in group_of.get(n, [n])]
            if wider in group:  # "children" asks about the twins
                words.update(narrower)
            elif word in narrower:  # "my mum" is among "my parents live in Faro" (not her brother's words)
                words.update(group_of.get(wider, [wider]))
        table[stem(word)] = frozenset(stem(w) for w in words)
    return table


#: "a border collie called Biscuit": whatever is called a name is named by that word too
_CALLED = frozenset(("called", "named"))
_WORDS_AND_MARKS = re.compile(r"[^\W\d_][^\W_]*|[.!?,;:]")


def relatives(text: str) -> list[tuple[str, str]]:
    """(relation stem, name token) pairs a statement introduces: "My younger brother Declan works as a chef" ->
    [("brother", "declan")], "We have a border collie called Biscuit" -> [("colli", "biscuit")], "my kids Cian
    and Orla" -> both names. A later query that says "my brother" can then find "Declan just got engaged"."""
    words = _WORDS_AND_MARKS.findall(text)
    pairs: list[tuple[str, str]] = []
    for n, word in enumerate(words[:-1]):
        lower = word.lower()
        if lower in _CALLED and n > 0 and words[n - 1][0].isalpha():
            relation, at = words[n - 1].lower(), n + 1
        elif lower in RELATIONS and not word[0].isupper():
            relation, at = lower, n + 1 + (words[n + 1] == ",")
        else:
            continue
        if relation in STOPWORDS:
            continue
        while at < len(words) and words[at][0].isupper() and words[at] not in ("I", "I'm", "I've"):
            pairs += [(stem(relation), t) for t in tokenize(words[at]) if t not in STOPWORDS]
            at += 2 if at + 2 < len(words) and words[at + 1] == "and" and words[at + 2][0].isupper() else len(words)
    return pairs


#: at most this many names are written beside a relation in the text a query is embedded with
MAX_RELATIVE_NAMES = 3


def relative_names(word: str, relatives_of: Mapping[str, Collection[str]]) -> list[str]:
    """The names the actor gave the relation ``word`` (any word for it, or for the relations it covers)."""
    covered = _RELATIONS_COVERED.get(stem(word.lower()), ())
    return list(dict.fromkeys(name for relation in covered for name in relatives_of.get(relation, ())))


def with_relatives(query: str, relatives_of: Mapping[str, Collection[str]]) -> str:
    """``query`` with the names the actor gave its relations written beside them: "How is my brother's love
    life?" -> "How is my brother marek's love life?" (what the dense model can then tie to "Marek got
    engaged"); ``query`` itself when it names no such relation."""
    if not relatives_of:
        return query

    def named(match: re.Match[str]) -> str:
        names = relative_names(match.group(0), relatives_of)[:MAX_RELATIVE_NAMES]
        return f"{match.group(0)} {' and '.join(names)}" if names else match.group(0)

    return _LETTERS.sub(named, query)


_LETTERS = re.compile(r"[^\W\d_]+")


def relatives_in(terms: Sequence[str], relatives_of: Mapping[str, Collection[str]]) -> dict[str, list[str]]:
    """Per relation stem among ``terms``, the stems that count as it in a record: the names the actor gave it
    and the other words for it ("brother" -> ["declan", "bro"]; "children" -> ["arjun", "kiran", "twin", ...])."""
    aliases = {}
    for term in terms:
        stemmed = stem(term)
        covered = _RELATIONS_COVERED.get(stemmed)
        if covered:
            names = [stem(name) for name in relative_names(term, relatives_of)]
            aliases[stemmed] = [*names, *sorted(covered - {stemmed})]
    return aliases


_RELATIONS_COVERED = _relation_table()


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
