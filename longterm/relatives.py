"""Relatives by the names the user gave them: "my brother Declan" makes a later "my brother" find "Declan".

A statement that introduces someone (or a pet) by relation and name ("My younger brother Declan works as a
chef", "a border collie called Biscuit", "my twins, Arjun and Kiran") gives the actor's index a pair
(``introduced``); the index keeps them per actor, from its statements, so deleting the statement forgets the
pair. A query that names a relation is then embedded with the names written beside it (``with_names``: "How
is my brother's love life?" -> "How is my brother declan's love life?") and, in the keyword pass, a record
naming Declan counts as containing "brother" (``aliases``, read by ``longterm.keyword``). Any word for the
relation counts ("mom" / "mum" / "amma"), and the wider and narrower ones ("children" asks about the twins;
"my mum" is among "my parents").
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

from longterm.text import STOPWORDS, stem, tokenize

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


def introduced(text: str) -> list[tuple[str, str]]:
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


def names_for(word: str, relatives_of: Mapping[str, Collection[str]]) -> list[str]:
    """The names the actor gave the relation ``word`` (any word for it, or for the relations it covers)."""
    covered = _RELATIONS_COVERED.get(stem(word.lower()), ())
    return list(dict.fromkeys(name for relation in covered for name in relatives_of.get(relation, ())))


def with_names(query: str, relatives_of: Mapping[str, Collection[str]]) -> str:
    """``query`` with the names the actor gave its relations written beside them: "How is my brother's love
    life?" -> "How is my brother marek's love life?" (what the dense model can then tie to "Marek got
    engaged"); ``query`` itself when it names no such relation."""
    if not relatives_of:
        return query

    def named(match: re.Match[str]) -> str:
        names = names_for(match.group(0), relatives_of)[:MAX_RELATIVE_NAMES]
        return f"{match.group(0)} {' and '.join(names)}" if names else match.group(0)

    return _LETTERS.sub(named, query)


_LETTERS = re.compile(r"[^\W\d_]+")


def aliases(terms: Sequence[str], relatives_of: Mapping[str, Collection[str]]) -> dict[str, list[str]]:
    """Per relation stem among ``terms``, the stems that count as it in a record: the names the actor gave it
    and the other words for it ("brother" -> ["declan", "bro"]; "children" -> ["arjun", "kiran", "twin", ...])."""
    found = {}
    for term in terms:
        stemmed = stem(term)
        covered = _RELATIONS_COVERED.get(stemmed)
        if covered:
            names = [stem(name) for name in names_for(term, relatives_of)]
            found[stemmed] = [*names, *sorted(covered - {stemmed})]
    return found


_RELATIONS_COVERED = _relation_table()
