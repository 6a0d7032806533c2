"""What a record is, and how likely it is to answer a query: the decision of what reaches the model.

Two things the rank-fused score cannot say (it is relative to its query's best record, so its scale
moves with the size of the memory):

- **kind**: every message stays retrievable, but a question ("what is my cat called?"), a greeting or an
  acknowledgement states nothing, and the model's reply (the second message of an exchange) only says
  what the model made of the user's words. Computed from the text when a record is indexed (no stored
  field): the ranking multiplies a record's score by its kind's weight, and the relevance model has one
  term per kind.
- **relevance**: a logistic model of P(the record answers the query) from absolute evidence: the cosine of
  the two embeddings, the share of the query's content words (weighted by rarity) that the record's text
  contains, the saturated BM25, the kind, and whether the query is about the asker at all
  (``about_the_asker``: "Where do I live?" is, "Who wrote Pride and Prejudice?" is not, and a record
  that merely shares a subject with a general question is not what the user asked for). Fitted on a calibration set written for it
  (``bench/ltm_natural.py bench/data/ltm_calibration.json --fit``), never on the benchmark's questions;
  ``LTM_MIN_SCORE`` is a threshold on this probability, so it means the same at 10 records and at 10,000.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from longterm.text import STOPWORDS, proper_names, stem, tokenize

#: record kinds (int8 codes in the index)
STATEMENT, QUESTION, CHATTER, REPLY = 0, 1, 2, 3
KIND_NAMES = ("statement", "question", "chatter", "reply")
#: the ranking's multiplier per kind: statements first; a reply below the statement it answers; questions and
#: small talk last (measured: see docs/longterm.md)
KIND_WEIGHT = np.array([1.0, 0.6, 0.3, 0.7], np.float64)

#: greetings, thanks and acknowledgements: a message made only of these (and stop words) states nothing
CHATTER_WORDS = frozenset("""
hi hello hey hiya howdy morning evening afternoon night good great nice cool ok okay k fine thanks thank cheers ta
yes yeah yep no nope sure perfect awesome lovely brilliant wow lol haha bye goodbye later see meet pleasure
sorry mind never right alright got it welcome again there please hmm oh ah well done np gotcha noted
helpful useful interesting amazing fantastic excellent understood makes sense agreed exactly indeed
mate mates buddy pal guys folks worries helps helped appreciate appreciated legend champ sweet ya yea nah going
doing sup today
""".split())
#: first words of a question or a request to the assistant (a sentence that asks, not tells)
ASKING_WORDS = frozenset("""
what whats which who whom whose where when why how is are am was were do does did can could would will should
shall may might tell explain give write translate recommend suggest show list describe summarise summarize help
remind find define compare calculate
""".split())
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
#: words by which a message speaks of its speaker ("where do I live", "my cat", "what did we buy")
FIRST_PERSON = frozenset("i me my mine myself we us our ours ourselves".split())
#: verbs of a request to the assistant whose "me" is the recipient, not the subject ("write me a haiku")
REQUEST_VERBS = frozenset("give write tell show send make find get recommend suggest draw sing".split())
#: the people and things of a household: in chat "the kids", "the wife", "the dog" are the asker's own
#: ("what are the kids called?"), while a general question says "a dog" or "kids"
HOUSEHOLD = frozenset("""
kids kid children baby son sons daughter daughters twins wife husband hubby missus partner boyfriend girlfriend
fiance fiancee family parents folks inlaws grandkids grandchildren dog dogs pup puppy cat cats kitten pets pet car
van house flat garden allotment boss
""".split())
#: what a family calls its own without "my": "when is mum's birthday?"
FAMILY_NAMES = frozenset("mum mom mam mummy mommy dad daddy nan nana gran granny grandma grandad grandpa".split())
_CAPITALISED = re.compile(r"[^\W\d_][^\W_]*")


def about_the_asker(query: str, known: Mapping[str, int], named: Sequence[str] = (),
                    names: Collection[str] = frozenset()) -> bool:
    """Whether a query is about the asker's own life, so that memory may answer it.

    It is when it speaks of its speaker (I, my, we...; not the me of "give me a recipe"), of the
    household ("the kids", "the dog", "mum"), names a participant of the conversations (``named``), or names someone or something the actor's records
    mention: a word whose stem is one of the ``names`` the actor's statements use (``text.proper_names``),
    however the query spells it ("what does inês do?"), or a capitalised word, other than a question word,
    whose stem is in ``known`` (stem -> records containing it), as "Who is Tomás?" when the records only
    name him at the start of a sentence. A general question ("What causes the northern lights?", "Who wrote
    Pride and Prejudice?") is not, and the relevance model asks much more of a record to answer it.
    """
    if named:
        return True
    tokens = tokenize(query)
    if names and any(stem(t) in names for t in tokens if t not in STOPWORDS):
        return True
    # "give me a recipe" asks the assistant for something; "remind me..." and "my cat" are about the asker. The
    # I of "how do I unclog a sink?" is anyone's, but "how do I keep fit these days?" is the asker's: it counts
    if any(t in FIRST_PERSON and not (t == "me" and n and tokens[n - 1] in REQUEST_VERBS)
           for n, t in enumerate(tokens)):
        return True
    if any(t in FAMILY_NAMES or (t in HOUSEHOLD and n and tokens[n - 1] == "the") for n, t in enumerate(tokens)):
        return True
    for word in _CAPITALISED.findall(query):
        if not word[0].isupper():
            continue
        for token in tokenize(word):
            if token in STOPWORDS or token in ASKING_WORDS or token in CHATTER_WORDS:
                continue
            if known.get(stem(token), 0) > 0:
                return True
    return False


def record_kind(text: str, seq: int = 0) -> int:
    """The kind of a record: the reply of an exchange (``seq`` > 0), chatter, a question, or a statement.

    A message is a statement if any of its sentences tells something: "I moved to Porto. Any tips?" is one,
    and so is a sentence that tells something in a clause before the one that asks, as people type to an
    assistant: "I swell up badly with bee stings, what should I carry?" (``_tells_then_asks``).
    """
    if seq > 0:
        return REPLY
    words = tokenize(text)
    if not words or _states_nothing(words):
        return CHATTER
    for sentence in _SENTENCE.findall(text):
        tokens = tokenize(sentence)
        if not tokens or _states_nothing(tokens) or tokens[0] in ASKING_WORDS:
            continue
        if not sentence.rstrip().endswith("?") or _tells_then_asks(sentence):
            return STATEMENT
    return QUESTION


#: where a sentence's clauses meet: a comma, a colon or a dash, or "so"/"but"/"and" ("he's a Sharks fan like me so
#: maybe a rugby game?")
_CLAUSE = re.compile(r"\s*[,;:\u2014\u2013]\s*|\s+-\s+|\s+(?:so|but|and)\s+", re.IGNORECASE)
#: what opens a question without telling anything: "quick question, ...", "random q, ...", "I was wondering, ...", "I'm
#: curious, ..." (with what is left of "I'm", "we're", "I've", "we'll", "I'd" once the apostrophe splits them)
PREFACE_WORDS = frozenset("""
quick question questions q random one thing things more another btw anyway wondering wonder curious ask asking
query idea ideas tips advice help think reckon m re ve ll d
""".split())
#: what opens a clause that supposes rather than tells: "if I head over to WA, who could I stay with?", "back when I
#: was on the northern run, which...?"
CONDITIONAL_WORDS = frozenset("if when whenever unless suppose supposing assuming say".split())


def _states_nothing(tokens: Sequence[str], also: Collection[str] = frozenset()) -> bool:
    """Whether ``tokens`` are only small talk and stop words (and the words ``also`` names)."""
    return all(w in CHATTER_WORDS or w in STOPWORDS or w in also for w in tokens)


def _unnamed(clause: str) -> list[str]:
    """The clause's words but the names it addresses or mentions (``text.proper_names``, or a capitalised word
    alone): "Hey Gina, ..." and "Maria, ..." open a question as "hey" does."""
    words = tokenize(clause)
    if len(words) == 1 and clause.lstrip()[:1].isupper():
        return []
    names = proper_names(clause)
    return [w for w in words if stem(w) not in names] if names else words


def _tells_then_asks(sentence: str) -> bool:
    """Whether a sentence that ends in a question tells something before it asks: a clause before the last says
    something ("so my cat keeps sneezing, is that normal?", "right, I'm off to Lisbon tomorrow, any tips?")
    rather than only opening the question ("quick question, how do I...?", "hey, what's...?"). A sentence of
    one clause ("any tips for Lisbon?"), one that asks from its first word ("is it normal that my cat, who is
    12, sleeps all day?") and one that supposes before it asks ("ok, if I head over to Perth, who could I stay
    with?") ask."""
    clauses = [_unnamed(c) for c in _CLAUSE.split(sentence.strip())]
    clauses = [c for c in clauses if c]
    if len(clauses) < 2 or clauses[0][0] in ASKING_WORDS:
        return False
    for words in clauses[:-1]:
        if words[0] in ASKING_WORDS or CONDITIONAL_WORDS.intersection(words[:2]):
            return False  # the question starts here, or what follows is supposed, not told
        if not _states_nothing(words, PREFACE_WORDS):
            return True
    return False


#: logistic coefficients over (cosine, text overlap, saturated bm25, question, chatter, reply, not about the asker,
#: bias), fitted by ``bench/ltm_natural.py --fit bench/data/ltm_calibration.json bench/data/ltm_calibration2.json``
#: before a query's relatives were named in its embedding (``relatives.with_names``); a refit after it,
#: (13.642, 0.963, -0.467, -6.578, -9.151, -3.516, -2.189, -6.672), delivered less on the calibration sets
#: themselves (hit rate 0.835 vs 0.851 on the second at LTM_MIN_SCORE 0.05, the same noise), so this one stays
COEFFICIENTS = (13.209, 1.955, -0.424, -7.018, -9.7, -3.815, -2.271, -6.554)
#: bm25 at which the keyword evidence counts half (bm25 / (bm25 + BM25_HALF))
BM25_HALF = 8.0


def features(cosine: np.ndarray, overlap: np.ndarray, bm25: np.ndarray, kinds: np.ndarray,
             about_asker: bool) -> np.ndarray:
    """The relevance model's inputs, one row per record (the order of ``COEFFICIENTS``); ``about_asker``
    is the query's (``about_the_asker``)."""
    saturated = np.where(bm25 > 0, bm25 / (bm25 + BM25_HALF), 0.0)
    general = np.full(len(cosine), 0.0 if about_asker else 1.0)
    return np.column_stack([cosine, overlap, saturated, kinds == QUESTION, kinds == CHATTER, kinds == REPLY,
                            general, np.ones(len(cosine))]).astype(np.float64)


def probability(x: np.ndarray, coefficients: Sequence[float] = COEFFICIENTS) -> np.ndarray:
    """P(relevant) for each row of ``features``."""
    return 1.0 / (1.0 + np.exp(-(x @ np.asarray(coefficients, np.float64))))


def fit(x: np.ndarray, y: np.ndarray, ridge: float = 1e-2) -> tuple[float, ...]:
    """Logistic regression by Newton's method (a little ridge: some kinds are rare in a small set)."""
    w = np.zeros(x.shape[1])
    for _ in range(60):
        p = 1 / (1 + np.exp(-x @ w))
        gradient = x.T @ (y - p) - ridge * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        w += np.linalg.solve(hessian, gradient)
    return tuple(round(float(v), 3) for v in w)


#: two user statements at least this similar (cosine) are about the same subject: the newer ranks first
SAME_SUBJECT = 0.45
#: two records at least this similar (cosine), or whose words mostly repeat the other's, are near-duplicates
NEAR_DUPLICATE = 0.8
#: share of the shorter record's words found in the longer one that makes them near-duplicates
WORD_CONTAINMENT = 0.8


def words_of(text: str) -> frozenset[str]:
    return frozenset(stem(t) for t in tokenize(text) if t not in STOPWORDS)


def repeats(a: frozenset[str], b: frozenset[str], share: float = WORD_CONTAINMENT) -> bool:
    """Whether the shorter of two word sets is mostly (``share``) inside the longer (an echo, a restatement)."""
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return bool(small) and len(small & large) >= share * len(small)


#: two statements alike in their vectors are near-duplicates only if this share of the shorter's words is in the
#: longer ("I'm allergic to peanuts" / "Just so you know, I'm allergic to peanuts"), not "My sister lives in
#: Porto" / "My brother lives in Porto"
RESTATED = 0.6


def restates(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two statements whose vectors are alike say the same thing: mostly the same words, the same
    numbers ("box 5 holds key 1005" and "box 6 holds key 1006" are two facts)."""
    return _numbers(a) == _numbers(b) and repeats(a, b, RESTATED)


def _numbers(words: frozenset[str]) -> frozenset[str]:
    return frozenset(w for w in words if any(c.isdigit() for c in w))
