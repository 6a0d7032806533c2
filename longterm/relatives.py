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
baby twins boy girl brother bro sister sis sibling mum mom mam mother amma dad father appa parent grandma grandmother grandad
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
_WORDS_AND_MARKS = re.compile(r"[^\W\d_][^\W_]*|[.!?,;:\u2014\u2013-]")
#: the words that make a relation the user's own: "my brother", "our dog", "we have two kids", "I've got a sister"
_OWNERS = frozenset(("my", "our"))
_HAVING = frozenset(("have", "has", "got", "ve"))
_THEIRS = frozenset(("his", "her", "their", "its", "your", "s"))
#: how far before the relation its owner may stand: "my younger brother", "our big old dog"
_OWNER_REACH = 3
#: titles before a name, not names: "my supervisor Dr. Kelleher" is Kelleher
_TITLES = frozenset(("dr", "mr", "mrs", "ms", "miss", "prof", "sr", "fr", "auntie", "aunty", "uncle", "nan"))


def _is_mark(word: str) -> bool:
    return not word[0].isalpha()


def _owner(words: Sequence[str], at: int) -> bool | None:
    """Whose the relation at ``words[at]`` is: True for the user's ("my younger brother", "our dog", "we also
    have a collie", "I've got a sister"), False for someone else's ("Kylie's husband", "his boyfriend", "I coach
    Cian's team", "Kylie's got a little boy"), None when the few words before it do not say."""
    for back in range(at - 1, max(-1, at - 1 - _OWNER_REACH), -1):
        word = words[back]
        lower = word.lower()
        if lower in _OWNERS:
            return True
        if lower in _HAVING:  # "we also have", "I've got": the user's; "Kylie's got", "he has": not
            return any(w.lower() in ("i", "we") for w in words[max(0, back - 2):back])
        if word == "-":  # "my step-son"
            continue
        if lower in _THEIRS or word[0].isupper():
            return False  # someone else's: "his", "their", a name ("Kylie's")
        if _is_mark(word) or (lower in STOPWORDS and lower not in ("a", "an")):
            return None  # another clause or phrase: "with a guy named Ben"
    return None


def _names_after(words: Sequence[str], at: int) -> list[str]:
    """The name tokens from ``words[at]`` on: one name, or several joined by "and" ("Cian and Orla")."""
    names: list[str] = []
    while at < len(words) and words[at][0].isupper() and words[at] != "I":
        if words[at].lower() in _TITLES and at + 1 < len(words):
            at += 1 + (words[at + 1] == ".")
            continue
        names += [t for t in tokenize(words[at]) if t not in STOPWORDS]
        at += 2 if at + 2 < len(words) and words[at + 1] == "and" and words[at + 2][0].isupper() else len(words)
    return names


def _name_before(words: Sequence[str], owner: int, relation: int) -> list[str]:
    """An appositive's name: "That's Kylie, my daughter, she's 31" -> Kylie. The relation must close the
    phrase (a mark or the end after it), so "On Monday, my boss said" names nobody, and "Josh, my son-in-law"
    names no son."""
    closed = relation + 1 == len(words) or (_is_mark(words[relation + 1]) and words[relation + 1] != "-")
    if owner < 2 or words[owner - 1] != "," or not closed:
        return []
    name = words[owner - 2]
    if not name[0].isupper() or name == "I":
        return []
    return [t for t in tokenize(name) if t not in STOPWORDS]


def introduced(text: str) -> list[tuple[str, str]]:
    """(relation stem, name token) pairs a statement introduces: "My younger brother Declan works as a chef" ->
    [("brother", "declan")], "We have a border collie called Biscuit" -> [("colli", "biscuit")], "my kids Cian
    and Orla" -> both names, "That's Kylie, my daughter" -> [("daughter", "kylie")]. Only the user's own: "his
    boyfriend Marcus" introduces nobody. A later query that says "my brother" can then find "Declan just got
    engaged"."""
    words = _WORDS_AND_MARKS.findall(text)
    pairs: list[tuple[str, str]] = []
    for n, word in enumerate(words):
        lower = word.lower()
        if lower in _CALLED and n > 0 and n + 1 < len(words) and words[n - 1][0].isalpha():
            relation, at, names = words[n - 1].lower(), n - 1, _names_after(words, n + 1)
        elif lower in RELATIONS and not word[0].isupper():
            after = n + 1 + (n + 1 < len(words) and words[n + 1] == ",")
            relation, at, names = lower, n, _names_after(words, after)
            if not names:
                owner_at = next((b for b in range(n - 1, max(-1, n - 1 - _OWNER_REACH), -1)
                                 if words[b].lower() in _OWNERS), None)
                names = _name_before(words, owner_at, n) if owner_at is not None else []
        else:
            continue
        if relation in STOPWORDS or not names:
            continue
        owner = _owner(words, at)
        # a relation word is the user's only when said so; "a rescue cat called Pickle", unless someone else's
        if owner is False or (owner is None and lower not in _CALLED):
            continue
        pairs += [(stem(relation), name) for name in names]
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
        if _IN_LAW.match(query, match.end()):
            return match.group(0)
        names = names_for(match.group(0), relatives_of)[:MAX_RELATIVE_NAMES]
        return f"{match.group(0)} {' and '.join(names)}" if names else match.group(0)

    return _LETTERS.sub(named, query)


_LETTERS = re.compile(r"[^\W\d_]+")
#: "my son-in-law" is not "my son": the relation word before it names nobody the user introduced by it
_IN_LAW = re.compile(r"[-\s]+in[-\s]+law", re.IGNORECASE)


def relations_in(query: str) -> frozenset[str]:
    """The stems of the relation words ``query`` asks about (not those of an in-law: "son-in-law")."""
    found = set()
    for match in _LETTERS.finditer(query):
        stemmed = stem(match.group(0).lower())
        if stemmed in _RELATIONS_COVERED and not _IN_LAW.match(query, match.end()):
            found.add(stemmed)
    return frozenset(found)


def aliases(query: str, terms: Sequence[str], relatives_of: Mapping[str, Collection[str]]) -> dict[str, list[str]]:
    """Per relation stem among ``terms`` that ``query`` asks about, the stems that count as it in a record: the
    names the actor gave it and the other words for it ("brother" -> ["declan", "bro"]; "children" -> ["arjun",
    "kiran", "twin", ...])."""
    relations = {term: stemmed for term in terms if (stemmed := stem(term)) in _RELATIONS_COVERED}
    if not relations:
        return {}  # most queries name no relation: the query is not read again
    asked = relations_in(query)
    found = {}
    for term, stemmed in relations.items():
        if stemmed in asked:
            names = [stem(name) for name in names_for(term, relatives_of)]
            found[stemmed] = [*names, *sorted(_RELATIONS_COVERED[stemmed] - {stemmed})]
    return found


_RELATIONS_COVERED = _relation_table()
