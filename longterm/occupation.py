"""The user's work: "What do I do for a living?" finds "I'm an air traffic controller at the airport tower".

The two share no word, and MiniLM puts them no closer than unrelated text (cosine 0.09): the commonest
question a user asks of a memory, answered by the statement it asks about only when the words happen to
meet ("I work as..." / "where do I work?"). So the index marks a statement in which the user says what they
do for a living with one more term, ``OCCUPATION`` (no text produces it), and a question about the asker's
own work counts that term as its word for work: the keyword score and the relevance model's text overlap
then find the statement as they find one that says "work".

Only the user's own statements (no speaker name, a statement by its kind) are marked, and only questions about
the asker's own work ("do I", "my job"; not "what does my wife do for work?") read the mark.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from longterm.relatives import RELATIONS
from longterm.text import stem, tokenize

#: the term a statement of the user's occupation gets in the index (not a stem any text can produce)
OCCUPATION = "\u27e8occupation\u27e9"

#: words by which a question asks about work (stems: "employed" and "employer" are "employ"); "living" only in
#: "for a living" (its stem is "live": "where do I live?" is not about work)
WORK_WORDS = frozenset(stem(w) for w in """
work job career profession occupation employ employed employer workplace crust trade shift shifts
""".split())
_FOR_A_LIVING = re.compile(r"\b(?:for|earn|make|making|earning) a living\b", re.IGNORECASE)

#: nouns of occupations that no suffix gives away ("a nurse at", "a physio in")
_JOB_NOUNS = ("nurse|physio|chef|cook|vet|medic|pilot|clerk|barista|nanny|coach|tutor|guard|cop|soldier|sailor|"
              "marine|midwife|surgeon|architect|dentist|paramedic|mechanic|carpenter|plumber|electrician|"
              "programmer|developer|accountant|consultant|lawyer|solicitor|barrister|judge|firefighter|"
              "postman|postie|carer|cleaner|tradie|sparky|chippy|truckie|ranger|receptionist|"
              "pharmacist|librarian|researcher|scientist|engineer|analyst|designer|teacher|lecturer|professor")
#: statements of the speaker's own work: "I work as/at/for", "I'm a nurse at ...", "... for a living"
_OCCUPATION = re.compile(
    r"\bi work (?:as|at|for|in|on)\b"
    r"|\bi(?:'m| am) (?:now |still )?(?:an? )(?:[\w-]+ ){0,3}?(?:" + _JOB_NOUNS + r"|[\w-]+(?:er|or|ist|ian|eon))s?"
    r"\b(?: (?:at|for|in|on|with)\b|,|\.|$)"
    r"|\bfor a (?:living|crust)\b|\bby (?:trade|profession)\b"
    r"|\bmy (?:job|work|day job|profession|career|occupation)\b(?! (?:is|was) (?:killing|stressful|boring|busy))",
    re.IGNORECASE)
#: words ending as occupations do that are not ("I'm a bit older, ...", "I'm a better cook now")
_NOT_JOBS = frozenset("""
older younger bigger smaller better worse faster slower taller shorter happier later earlier other brother sister
mother father daughter member fan lover beginner newcomer never
""".split())
#: the asker is the one asked about: "do I", "am I", "I work", "I do", or "my" right before the work word
_ASKER = re.compile(r"\b(?:do|did|am|have|was|should|can) i\b|\bi(?:'m| am| do| work|'ve|'d)\b", re.IGNORECASE)


def states_occupation(text: str) -> bool:
    """Whether a user's statement says what the user does for a living."""
    for found in _OCCUPATION.finditer(text):
        words = tokenize(found.group(0))
        if not (set(words) & _NOT_JOBS):
            return True
    return False


def aliases(query: str, terms: Sequence[str]) -> dict[str, list[str]]:
    """Per work word among ``terms`` of a question about the asker's own work: ``[OCCUPATION]``."""
    living = bool(_FOR_A_LIVING.search(query))
    cues = [stemmed for term in terms if (stemmed := stem(term)) in WORK_WORDS or (living and stemmed == "live")]
    if not cues:
        return {}  # most queries say nothing of work: the query is not read again
    words = tokenize(query)
    if any(stem(w) in RELATIONS or w in RELATIONS for w in words):
        return {}  # "what does my wife do for work?": someone else's work
    mine = bool(_ASKER.search(query)) or any(
        w == "my" and n + 1 < len(words) and stem(words[n + 1]) in WORK_WORDS for n, w in enumerate(words))
    return {cue: [OCCUPATION] for cue in cues} if mine else {}
