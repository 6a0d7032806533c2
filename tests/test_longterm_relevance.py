"""What reaches the model from long-term memory, over POST /invocations at the defaults (echo model, SQLite).

A paraphrase with no word in common is recalled in a new session; a question memory cannot answer gets
nothing; an update ranks above the statement it replaces; a question the user asked earlier does not
outrank the statement it asked about; a fact said twice (and echoed back by the model) is injected once.
The pieces (record kinds, the relevance model) are tested on their own at the end.
"""

from __future__ import annotations


import numpy as np
import pytest
from starlette.testclient import TestClient

from longterm.relevance import (CHATTER, QUESTION, REPLY, STATEMENT, features, probability, record_kind,
                                repeats, words_of)
from core.settings import Settings
from longterm.text import stem
from service import Assistant
from tests.helpers.scripted_model import ScriptedModel
from tests.test_http import invoke
from tests.helpers.longterm_http import http, ltm_assistant  # noqa: F401 (fixtures)

#: what a user told the assistant over a few sessions (each message one turn)
TOLD = {
    "monday": ["Hi there!", "I work as a lighthouse keeper on the north coast.",
               "My sister Joana is a nurse in Coimbra.", "Thanks, that's helpful!"],
    "tuesday": ["Good morning!", "I support FC Porto, I never miss a match on TV.", "My cat is called Biscuit, a ginger tabby.",
                "I'm saving up for an electric bike."],
}


def say(http: TestClient, session: str, message: str, actor: str = "ana") -> dict:
    response = invoke(http, {"message": message, "actor_id": actor, "explain": True}, session)
    assert response.status_code == 200, response.text
    return response.json()


def tell(http: TestClient, assistant: Assistant, sessions: dict[str, list[str]]) -> None:
    for session, messages in sessions.items():
        for message in messages:
            say(http, session, message)
    assert assistant.ltm is not None and assistant.ltm.flush(30)


def recalled(model: ScriptedModel) -> list[str]:
    """The recalled records of the last call, as the model was handed them, in order ("user: ..." / "assistant: ...")."""
    speakers = {"the user": "user", "the assistant (you), replying": "assistant"}
    return [f"{speakers[item['said_by']]}: {item['quote']}" for item in model.quoted() if item["said_by"] in speakers]


def test_a_paraphrase_with_no_word_in_common_is_recalled_in_a_new_session(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    tell(http, ltm_assistant, TOLD)
    answer = say(http, "friday", "Which football team do I follow?")
    assert answer["history_length"] == 0  # a new session: it can only come from long-term memory
    assert recalled(model)[0] == "user: I support FC Porto, I never miss a match on TV."
    assert answer["memory"]["long_term"][0]["session_id"] == "tuesday"


def test_a_question_memory_cannot_answer_injects_nothing(http: TestClient, ltm_assistant: Assistant,
                                                         model: ScriptedModel) -> None:
    tell(http, ltm_assistant, TOLD)
    for question in ("What is the capital of Australia?", "How long should I boil an egg?",
                     "Translate 'good morning' into French."):
        answer = say(http, "friday", question)
        assert answer["memories_used"] == 0 and answer["memory"]["long_term"] == [], question
        assert recalled(model) == []


def test_a_newer_statement_of_the_same_subject_ranks_first(http: TestClient, ltm_assistant: Assistant,
                                                            model: ScriptedModel) -> None:
    tell(http, ltm_assistant, {"january": ["I live in Lisbon, in a small flat near the river."],
                           "march": ["Big news: we moved from Lisbon to Porto last week!"]})
    say(http, "april", "Where do I live?")
    users = [line for line in recalled(model) if line.startswith("user: ")]
    assert users[0] == "user: Big news: we moved from Lisbon to Porto last week!"
    assert "user: I live in Lisbon, in a small flat near the river." in users[1:]  # still there, below


def test_an_update_that_names_the_same_thing_ranks_first_though_its_words_differ(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    # the two statements' vectors are far apart (cosine 0.34): only the name they share says one updates the other
    tell(http, ltm_assistant, {"january": ["I drive an old blue Fiat Panda."],
                           "june": ["We sold the Fiat and now share a Renault Zoe."]})
    for question in ("What car do I have?", "What do we drive now?"):
        say(http, "july", question)
        users = [line for line in recalled(model) if line.startswith("user: ")]
        assert users[0] == "user: We sold the Fiat and now share a Renault Zoe.", (question, users)


def recalled_after_news(http: TestClient, assistant: Assistant, model: ScriptedModel, introduction: str, news: str,
                        question: str) -> list[str]:
    """What ``question``, asked in a new session, hands the model after ``introduction`` (in May) and ``news`` (in
    June) were told in sessions of their own."""
    tell(http, assistant, {**TOLD, "may": [introduction], "june": [news]})
    say(http, "july", question)
    return recalled(model)


def test_a_relative_asked_about_by_relation_is_found_by_the_name_the_user_gave_them(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    # "Marek got engaged" says neither "brother" nor anything like "love life": only "my brother Marek", said in
    # another session, ties the question to it
    assert "user: Marek got engaged to his boyfriend last weekend!" in recalled_after_news(
        http, ltm_assistant, model, "My younger brother Marek works as a sous chef in Gdansk.",
        "Marek got engaged to his boyfriend last weekend!", "How is my brother's love life going?")


def test_a_relative_named_before_the_relation_is_found_by_it(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    # "Kylie, my daughter" names her as surely as "my daughter Kylie": the later news says only "Kylie"
    assert "user: Kylie's quit the dental clinic and started a dog grooming van." in recalled_after_news(
        http, ltm_assistant, model, "That's Kylie, my daughter, she's 31 and lives up at Redcliffe.",
        "Kylie's quit the dental clinic and started a dog grooming van.",
        "What's my daughter doing for work these days?")


def test_someone_elses_relative_is_not_taken_for_the_users(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    # "his boyfriend Marcus" is Marek's: "my boyfriend" must not bring Marcus's records to a single user
    assert "user: Marcus is a pilot for a cargo airline out of Leipzig." not in recalled_after_news(
        http, ltm_assistant, model, "My younger brother Marek got engaged to his boyfriend Marcus!",
        "Marcus is a pilot for a cargo airline out of Leipzig.", "Should I introduce my boyfriend to my parents?")


def test_the_users_occupation_answers_a_question_about_their_work_that_shares_no_word_with_it(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    # "for a living" / "air traffic controller": no word in common, cosine 0.09 (longterm.occupation)
    job = "so I'm an air traffic controller at the Winnipeg airport tower, been doing it about 8 years"
    tell(http, ltm_assistant, {**TOLD, "march": [job, "My wife Priya runs a bakery on Corydon Avenue."]})
    say(http, "april", "what do I do for a living?")
    assert f"user: {job}" in recalled(model)
    say(http, "may", "Where do I live these days?")  # "live" is not "a living": nothing about work
    assert f"user: {job}" not in recalled(model)


def test_a_fact_told_in_the_same_sentence_as_a_request_is_recalled(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    # people tell a fact on the way to asking for something: each message ends in a question, but a clause before it
    # tells what the later question is answered by (taken for a question, none of them was recalled)
    told = {"I play bass guitar in our church band on Sundays, can you explain what a walking bass line is?":
            "What instrument do I play?",
            "my daughter Ines has a peanut allergy so what snacks can I pack for her school trip?":
            "Is my daughter allergic to anything?",
            "we just adopted a greyhound called Pixel, how often should he be walked?": "What breed is our dog?"}
    tell(http, ltm_assistant, {**TOLD, "may": list(told)})
    for fact, question in told.items():
        say(http, "july", question)
        assert recalled(model)[:1] == [f"user: {fact}"], question


def test_a_deleted_statement_no_longer_ties_the_relation_to_its_name(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    # what the index learnt from a statement ("brother" is Marek) is the user's data too: deleting the
    # statement forgets it, so "my brother" finds "Marek got engaged" no more
    tell(http, ltm_assistant, {**TOLD, "may": ["My younger brother Marek works as a sous chef in Gdansk."],
                               "june": ["Marek got engaged to his boyfriend last weekend!"]})
    memories = invoke(http, {"action": "list_memories", "actor_id": "ana", "limit": 100}).json()["memories"]
    introduced = [m["record_id"] for m in memories if m["text"].startswith("My younger brother Marek")]
    assert len(introduced) == 1
    assert invoke(http, {"action": "delete_memory", "actor_id": "ana", "record_id": introduced[0]}).status_code == 200
    say(http, "july", "How is my brother's love life going?")
    assert "user: Marek got engaged to his boyfriend last weekend!" not in recalled(model)


def test_a_wider_word_for_a_relation_finds_the_relatives_the_user_named(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    # "kids" and "boys" are neither "twins" nor a name, and MiniLM puts the sentences far apart: without the
    # relation's words and names nothing is recalled for either question
    tell(http, ltm_assistant, {**TOLD, "may": ["the hard part is my twins, Arjun and Kiran, are 6 and never sit still"]})
    for question in ("Are my kids in school yet?", "How old are the boys now?"):
        say(http, "july", question)
        assert recalled(model)[:1] == ["user: the hard part is my twins, Arjun and Kiran, are 6 and never sit still"]


def test_a_narrower_word_for_a_relation_finds_what_was_said_of_the_wider_one(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    # "mum" and "dad" are among "my folks" (and "my parents"): by words and vectors alone nothing is recalled
    tell(http, ltm_assistant, {**TOLD, "may": ["My folks moved back to the Azores when they retired."]})
    say(http, "july", "Where are my mum and dad?")
    assert recalled(model)[:1] == ["user: My folks moved back to the Azores when they retired."]


def test_earlier_questions_on_the_subject_do_not_crowd_the_answer_out(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    # records that state nothing but share the question's words rank high: they must not take the places
    # (LTM_TOP_K, 5) of the statements that answer it
    tell(http, ltm_assistant, {"january": ["I live in Lisbon, in a small flat near the river."],
                           "questions": ["Which city is best to visit these days?", "What's new in the city these days?",
                                         "Which city should I visit these days?", "Is the city busy these days?",
                                         "What do cities charge for parking these days?",
                                         "Where are the best city views these days?"],
                           "march": ["Big news: we moved from Lisbon to Porto last week!"]})
    say(http, "april", "Which city am I based in these days?")
    users = [line for line in recalled(model) if line.startswith("user: ")]
    assert users[:1] == ["user: Big news: we moved from Lisbon to Porto last week!"], users


def test_a_general_question_about_a_subject_the_user_mentioned_injects_nothing(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    tell(http, ltm_assistant, {"books": ["My favourite book is One Hundred Years of Solitude."],
                           "food": ["I've been vegetarian for about five years now."]})
    for question in ("Who wrote Pride and Prejudice?", "Give me a recipe for pancakes."):
        answer = say(http, "later", question)
        assert answer["memory"]["long_term"] == [], question
    say(http, "later", "What's my favourite book?")  # the same subject, asked about the user: recalled
    assert recalled(model)[0] == "user: My favourite book is One Hundred Years of Solitude."


def test_an_earlier_question_does_not_outrank_the_statement_it_asked_about(
        http: TestClient, ltm_assistant: Assistant, model: ScriptedModel) -> None:
    tell(http, ltm_assistant, TOLD)
    tell(http, ltm_assistant, {"wednesday": ["what is the name of my cat?"]})
    say(http, "friday", "Tell me about my cat")
    lines = recalled(model)
    assert lines[0] == "user: My cat is called Biscuit, a ginger tabby."
    assert "user: what is the name of my cat?" not in lines[:1]


def test_a_fact_said_twice_and_echoed_back_is_injected_once(http: TestClient, ltm_assistant: Assistant,
                                                             model: ScriptedModel) -> None:
    tell(http, ltm_assistant, {"one": ["I'm allergic to peanuts, so I always check the labels."],
                           "two": ["Just so you know, I am allergic to peanuts and I always check labels."]})
    say(http, "three", "Do I have any food allergies?")
    lines = recalled(model)
    about_peanuts = [line for line in lines if "peanuts" in line]
    assert len(about_peanuts) == 1, lines  # two statements and two echo replies of them: one stands for all
    assert about_peanuts[0].startswith("user: ")


def test_small_talk_is_kept_but_not_recalled_for_a_real_question(http: TestClient, ltm_assistant: Assistant,
                                                                  model: ScriptedModel) -> None:
    tell(http, ltm_assistant, TOLD)
    assert ltm_assistant.ltm is not None
    assert any(m.text == "Hi there!" for m in ltm_assistant.ltm.search("ana", "Hi there!", 50))  # kept
    say(http, "friday", "Hi there, how are you today?")
    assert recalled(model) == []
    for greeting in ("Hello", "Hi there!", "thanks!", "ok"):  # small talk asks nothing: nothing is recalled for it
        assert say(http, "saturday", greeting)["memory"]["long_term"] == [], greeting


# -- the pieces ----------------------------------------------------------------------------------

def test_what_passes_the_threshold_is_ordered_by_relevance_statements_first() -> None:
    from longterm.index import build_index
    from longterm.selection import relevant_first

    texts = ["I live in Porto.", "Where do I live?", "We moved to Porto from Lisbon.", "I work in a bakery."]
    index = build_index([(n + 1, "s", 0, n + 1, 0, "", None, text, "", 1e9 + n) for n, text in enumerate(texts)])
    # the ranking's order (by rank) against the relevance model's: the more relevant statement goes first, the
    # question after every statement, the record under the threshold nowhere
    pool, relevance = relevant_first(index, [1, 0, 2, 3], np.array([0.9, 0.3, 0.6, 0.01]), 0.05)
    assert pool == [2, 0, 1]
    assert list(relevance) == [0.6, 0.3, 0.9]


@pytest.mark.parametrize("text, seq, kind", [
    ("I work as a lighthouse keeper.", 0, STATEMENT),
    ("Big news: we moved to Porto!", 0, STATEMENT),
    ("We moved to Porto. Any tips for restaurants?", 0, STATEMENT),  # it tells something, then asks
    ("I swell up badly with bee stings, what should I carry?", 0, STATEMENT),  # in one sentence, too
    ("he's a Sharks fan like me so maybe a rugby game?", 0, STATEMENT),
    ("So my cat keeps sneezing - is that normal?", 0, STATEMENT),
    ("Right, I'm off to Lisbon tomorrow, any tips?", 0, STATEMENT),  # a later clause tells
    ("Quick question, how do I boil an egg?", 0, QUESTION),  # its first clause only opens the question
    ("Hey, quick question, how do I boil an egg?", 0, QUESTION),
    ("ok so if I move to Perth, who could I stay with?", 0, QUESTION),
    ("Hey, what's the weather like in Porto?", 0, QUESTION),
    ("Hey Gina, how's it going with the new puppy?", 0, QUESTION),  # a name addressed tells nothing
    ("Maria, what's the deal with that note?", 0, QUESTION),
    ("Nice! I'm curious, what is it about?", 0, QUESTION),
    ("If I head over to Perth, who could I stay with?", 0, QUESTION),  # it supposes, it does not tell
    ("Is it normal that my cat, who is 12, sleeps all day?", 0, QUESTION),  # it asks from its first word
    ("Any tips for keeping fit?", 0, QUESTION),
    ("Once a week I swim at the lido, is that enough exercise?", 0, STATEMENT),
    ("What do I do for a living?", 0, QUESTION),
    ("Write me a haiku about autumn.", 0, QUESTION),  # a request tells nothing about the user
    ("Can you recommend a podcast", 0, QUESTION),
    ("Hi! Nice to meet you.", 0, CHATTER),
    ("ok", 0, CHATTER),
    ("Thanks, that's helpful!", 0, CHATTER),
    ("morning mate", 0, CHATTER),
    ("no worries, all good", 0, CHATTER),
    ("hey there, how ya going?", 0, CHATTER),
    ("hello! how are you today?", 0, CHATTER),
    ("I'm going to Lisbon with my mate Rui.", 0, STATEMENT),
    ("I work as a lighthouse keeper.", 1, REPLY),  # the model's reply, whatever it says
])
def test_a_records_kind_comes_from_its_text_and_place(text: str, seq: int, kind: int) -> None:
    assert record_kind(text, seq) == kind


def test_relevance_rises_with_each_kind_of_evidence_and_falls_for_what_states_nothing() -> None:
    def p(cosine: float, overlap: float = 0.0, bm25: float = 0.0, kind: int = STATEMENT,
          about_asker: bool = True) -> float:
        return float(probability(features(np.array([cosine]), np.array([overlap]), np.array([bm25]),
                                          np.array([kind]), about_asker))[0])

    assert 0.0 < p(0.1) < p(0.4) < p(0.4, overlap=0.5) < 1.0
    default = Settings().ltm_min_score
    assert p(0.1) < default < p(0.45)  # unrelated under the default LTM_MIN_SCORE, a close paraphrase above
    for kind in (QUESTION, CHATTER, REPLY):
        assert p(0.5, 0.5, 5.0, kind) < p(0.5, 0.5, 5.0, STATEMENT)
    # a general question needs much more: a record about the same subject is not what it asks for
    assert p(0.4, 0.3, 5.0, about_asker=False) < default < p(0.4, 0.3, 5.0)


@pytest.mark.parametrize("query, about", [
    ("Where do I live?", True),
    ("What's my cat called?", True),
    ("Remind me which town we relocated to.", True),
    ("How do I take my coffee?", True),  # a how-to shape, but "my"
    ("Who is Tomás?", True),  # a name the records mention
    ("what does ines do?", True),  # ... however it is spelt, once the records use it as a name
    ("What is the population of Lisbon?", True),  # a name the user uses: about their life, as far as words can tell
    ("Who wrote Pride and Prejudice?", False),
    ("How do I keep fit these days?", True),  # a how-to's I may be anyone's, but often it is the asker's
    ("Give me a recipe for pancakes.", False),  # "me" receives; it says nothing of the asker
    ("Tell me a joke about penguins.", False),
    ("What is the capital of Australia?", False),
    ("What are the kids called?", True),  # "the kids" of a chat are the asker's
    ("when's mum's birthday again", True),
    ("How long do dogs live?", False),  # a general question says "dogs", "a dog"
    ("What is the best car for a family?", False),
])
def test_a_query_is_about_the_asker_when_it_speaks_of_them_or_names_their_people(query: str, about: bool) -> None:
    from longterm.relevance import about_the_asker
    from longterm.text import stem

    known = {stem("tomas"): 2, stem("ines"): 1, stem("lisbon"): 3}  # stem -> records containing it
    names = {stem("ines"), stem("lisbon")}  # what the actor's statements name inside a sentence
    assert about_the_asker(query, known, names=names) is about


@pytest.mark.parametrize("text, pairs", [
    ("My younger brother Declan works as a sous chef.", [("brother", "declan")]),
    ("We have a border collie called Biscuit, she's three", [(stem("collie"), "biscuit")]),
    ("our kids Cian and Orla love the beach", [("kid", "cian"), ("kid", "orla")]),
    ("I have a call with my manager Rui every Monday.", [(stem("manager"), "rui")]),
    ("My sister is a nurse. Joana lives in Coimbra.", []),  # no name beside the relation
    ("I moved to Porto with my family.", []),
    ("That's Kylie, my daughter, she's 31", [("daughter", "kylie")]),  # the name before the relation
    ("we also have a border collie called Biscuit", [(stem("collie"), "biscuit")]),
    ("my supervisor Dr. Kelleher wants a draft", [(stem("supervisor"), "kelleher")]),  # a title is no name
    # someone else's relatives, and a relation that does not close the phrase, introduce nobody to the user
    ("Declan just got engaged to his boyfriend Marcus!", []),
    ("Kylie's husband Josh is a sparky", []),
    ("Kylie's got a little boy, Mason, he's 4", []),
    ("On Monday, my boss said no", []),
    ("Josh, my son-in-law, is a sparky", []),  # an in-law is not the relation its word starts with
    ("my step-son Tom starts school", [("son", "tom")]),
])
def test_a_statement_names_the_relatives_it_introduces(text: str, pairs: list[tuple[str, str]]) -> None:
    from longterm.relatives import introduced

    assert introduced(text) == pairs


def test_a_query_names_the_relatives_of_any_word_for_their_relation() -> None:
    from longterm.relatives import aliases, with_names

    named = {stem("twins"): ["arjun", "kiran"], stem("husband"): ["owen"], stem("brother"): ["vikram"]}
    assert with_names("How many children do I have?", named) == "How many children arjun and kiran do I have?"
    assert with_names("what's my spouse's name?", named) == "what's my spouse owen's name?"
    assert with_names("Where does my sister live?", named) == "Where does my sister live?"  # no name for her
    # an in-law is not the relation the word starts with: "my son-in-law" is not "my son"
    assert with_names("What's my brother-in-law's trade?", named) == "What's my brother-in-law's trade?"
    assert aliases("What's my brother-in-law's trade?", ["brother", "law", "trade"], named) == {}
    aliases = aliases("what does my brother do for a job?", ["brother", "job"], named)
    assert set(aliases) == {"brother"} and aliases["brother"][0] == "vikram" and "bro" in aliases["brother"]


@pytest.mark.parametrize("text, states", [
    ("I work as a lighthouse keeper on the north coast.", True),
    ("so I'm a nurse at University Hospital Galway, been there about 8 years now", True),
    ("So I'm a physio at Southmead hospital, mostly rehab", True),
    ("I drive road trains for a living, been a truckie 22 years", True),
    ("I'm an air traffic controller at the Winnipeg airport tower", True),
    ("I'm a carpenter by trade.", True),
    ("I'm a bit older, so take it easy on me.", False),
    ("I'm a big fan of jazz.", False),
    ("My wife Priya runs a bakery.", False),
    ("I work out three times a week.", False),
])
def test_a_statement_of_the_users_occupation_is_told_from_others(text: str, states: bool) -> None:
    from longterm.occupation import states_occupation

    assert states_occupation(text) is states


@pytest.mark.parametrize("query, marked", [
    ("What do I do for a living?", True), ("Where do I work?", True), ("What's my job?", True),
    ("Which hospital am I employed at?", True), ("What do I do for a crust?", True),
    ("Where do I live?", False),  # the stem of "living" is "live"
    ("What does my wife do for work?", False), ("What did my grandfather do for work?", False),
    ("What is the capital of Australia?", False),
])
def test_only_a_question_about_the_askers_own_work_reads_the_occupation_mark(query: str, marked: bool) -> None:
    from longterm.occupation import OCCUPATION, aliases
    from longterm.text import query_terms

    assert (OCCUPATION in [a for found in aliases(query, query_terms(query)).values() for a in found]) is marked


def test_the_names_of_a_statement_are_its_capitalised_words_inside_a_sentence() -> None:
    from longterm.text import proper_names

    assert proper_names("We sold the Fiat and now share a Renault Zoe.") == {"fiat", "renault", "zoe"}
    assert proper_names("Big news: we moved from Lisbon to Porto last week! I love it.") == {"lisbon", "porto"}
    assert proper_names("I live in a flat.") == frozenset()  # "I" and a sentence's first word are not names


def test_an_echo_repeats_the_statement_and_different_facts_do_not() -> None:
    statement = words_of("I'm allergic to peanuts, so I always check the labels.")
    assert repeats(statement, words_of("You said 'I'm allergic to peanuts, so I always check the labels.'"))
    assert not repeats(statement, words_of("My sister Joana is a nurse in Coimbra."))


def test_a_record_whose_vector_is_not_written_yet_is_indexed_with_none() -> None:
    from longterm.index import build_index
    from longterm.keyword import bm25f

    unit = np.zeros(384, np.float32)
    unit[0] = 1.0
    index = build_index([(1, "s1", 0, 1, 0, "", unit.tobytes(), "I live in Lisbon", "", 1.7e9),
                         (2, "s1", 0, 1, 1, "", b"", "You said 'I live in Lisbon'", "", 1.7e9)])
    assert index.size == 2 and not index.vectors[1].any()  # no vector yet: its cosine is 0
    assert (bm25f(index, ["lisbon"], (1.0, 0.5, 0.7, 0.5, 1.0)) > 0).all()  # found by its words meanwhile
    assert list(index.kinds) == [STATEMENT, REPLY]


def test_statements_that_differ_in_a_number_or_most_words_are_not_duplicates() -> None:
    from longterm.relevance import restates

    assert restates(words_of("I'm allergic to peanuts, so I always check the labels."),
                    words_of("Just so you know, I am allergic to peanuts and I always check labels."))
    assert not restates(words_of("Locker note 5: box 5 holds the spare key number 1005"),
                        words_of("Locker note 6: box 6 holds the spare key number 1006"))
    assert not restates(words_of("My sister Joana lives in Porto"), words_of("My brother Rui lives in Porto"))
