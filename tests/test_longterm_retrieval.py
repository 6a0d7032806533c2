"""The retrieval recipe's pieces, each on a tiny hand-made corpus (``longterm.text``, ``.scoring``, ``.keyword`` and
the FTS5 index it is checked against, ``bench/ltm_baseline.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from longterm.base import MessageRecord
from longterm.scoring import (boost_speaker, fuse, max_normalise, minmax, smooth_neighbours, top_k)
from longterm.index import build_index
from longterm.sqlite_store import SQLiteLongTermStore
from longterm.text import (date_words, embedded_text, estimate_tokens, find_names, fts_match, informative_terms,
                           query_terms, stem, strip_names)
from tests.helpers.longterm_helpers import embedder, local_ltm, say


# -- query processing ------------------------------------------------------------------------

def test_a_query_keeps_its_content_words_once_in_order() -> None:
    assert query_terms("What did I say about the trip to Oslo, the Oslo trip?") == ["say", "trip", "oslo"]


def test_a_huge_query_is_cut_to_its_first_terms() -> None:
    assert len(query_terms(" ".join(f"word{n}" for n in range(1000)))) == 48


def test_terms_in_most_of_the_actors_records_are_dropped_and_the_rarest_kept() -> None:
    df = {"trip": 150, "oslo": 3, "museum": 40, "the": 300}  # of 250 records: trip and the are too common
    assert informative_terms(["the", "trip", "oslo", "museum"], df, 250) == ["oslo", "museum"]
    assert informative_terms(["the", "trip", "oslo"], df, 20) == ["the", "trip", "oslo"]  # a small actor: kept
    assert informative_terms(["trip", "oslo", "museum"], df, 250, max_terms=2) == ["oslo", "museum"]
    assert informative_terms(["unknown"], df, 1000) == ["unknown"]


def test_a_query_of_common_words_keeps_only_what_the_budget_allows() -> None:
    words = [f"w{n}" for n in range(30)]
    df = {stem(w): 1500 + n for n, w in enumerate(words)}  # each in 15% of 10,000 records
    kept = informative_terms(words, df, 10_000, budget=8_000)
    assert kept == ["w0", "w1"]  # the rarest two: ~2,800 records x 2 terms; a third, ~3,900 x 3
    assert informative_terms(words, df, 10_000, budget=10) == ["w0"]  # one term is always kept


def test_stems_are_those_fts5_indexes() -> None:
    assert [stem(w) for w in ("running", "happiness", "cellos", "agreed")] == ["run", "happi", "cello", "agre"]


def test_the_match_expression_quotes_every_term() -> None:
    assert fts_match(["peanut", "near"]) == '"peanut" OR "near"'
    assert fts_match([]) == ""


def test_participant_names_become_a_filter_not_search_terms() -> None:
    question = "What did Caroline's sister say to Mel?"
    assert find_names(question, ["Caroline", "Melanie", "Mel"]) == ["Caroline", "Mel"]
    assert strip_names(question, ["Caroline"]) == "What did sister say to Mel?"
    assert "caroline" not in query_terms(strip_names(question, ["Caroline"]), drop={"caroline"})


def test_a_record_day_is_written_as_questions_quote_it() -> None:
    assert date_words(1_683_550_000.0) == "8 May 2023"


def test_the_embedded_text_names_its_speaker() -> None:
    assert embedded_text("Caroline", "I went hiking") == "Caroline: I went hiking"
    assert embedded_text("", "I went hiking") == "I went hiking"


def test_token_estimates_grow_with_the_text() -> None:
    assert estimate_tokens("a") == 1
    assert estimate_tokens("x" * 400) == 100


# -- scores ----------------------------------------------------------------------------------

def test_normalisations() -> None:
    assert max_normalise(np.array([0.0, 2.0, 4.0])).tolist() == [0.0, 0.5, 1.0]
    assert max_normalise(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]
    assert minmax(np.array([0.2, 0.4, 0.6])).tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_fusion_lets_a_record_strong_on_both_signals_win() -> None:
    bm25 = np.array([10.0, 0.0, 6.0])
    cosine = np.array([0.1, 0.9, 0.7])
    # keyword-only would pick 0, dense-only 1; the record good at both wins the fused score
    assert int(np.argmax(fuse(bm25, cosine, 0.5))) == 2
    assert int(np.argmax(fuse(bm25, cosine, 0.0))) == 0
    assert int(np.argmax(fuse(bm25, cosine, 1.0))) == 1


def test_the_speaker_named_in_the_query_is_boosted_only_when_one_is_named() -> None:
    speakers = np.array(["Ann", "Bo", "Ann"], dtype=object)
    scores = np.zeros(3)
    assert boost_speaker(scores, speakers, ["Ann"], 0.2).tolist() == [0.2, 0.0, 0.2]
    assert boost_speaker(scores, speakers, ["Ann", "Bo"], 0.2).tolist() == [0.0, 0.0, 0.0]


def test_a_record_next_to_a_strong_one_is_lifted_within_its_session() -> None:
    scores = np.array([0.0, 1.0, 0.0, 0.0])
    prev_index = np.array([-1, 0, 1, -1])  # records 0-2 one session, 3 another
    next_index = np.array([1, 2, -1, -1])
    assert smooth_neighbours(scores, prev_index, next_index, 0.5).tolist() == [0.5, 1.0, 0.5, 0.0]


def test_top_k_is_best_first_ties_to_the_earlier_and_honours_the_mask() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.1])
    assert top_k(scores, 3).tolist() == [1, 0, 2]
    assert top_k(scores, 3, np.array([True, False, True, True])).tolist() == [0, 2, 3]
    assert top_k(scores, 9, np.array([False, False, False, True])).tolist() == [3]


def test_neighbours_follow_conversation_order_not_write_order() -> None:
    vec = np.zeros(384, "<f4").tobytes()
    # (id, session, generation, turn, seq, speaker, vector, text, caption, created_at): s1's turn 2 was written
    # before its turn 1
    rows = [(1, "s1", 0, 2, 0, "", vec, "", "", 0.0), (2, "s2", 0, 1, 0, "", vec, "", "", 0.0),
            (3, "s1", 0, 1, 0, "", vec, "", "", 0.0), (4, "s1", 0, 1, 1, "", vec, "", "", 0.0),
            (5, "s1", 1, 1, 0, "", vec, "", "", 0.0)]
    index = build_index(rows)
    # s1 gen 0 in order: id3 (t1 s0), id4 (t1 s1), id1 (t2); s2 and s1 gen 1 stand alone
    assert index.prev_index.tolist() == [3, -1, -1, 2, -1]
    assert index.next_index.tolist() == [-1, -1, 3, 0, -1]


# -- the FTS5 index -------------------------------------------------------------------------------

def load_baseline() -> ModuleType:
    """``bench/ltm_baseline.py``: the FTS5 index the benchmark's baseline searches and keyword scores are checked
    against (the product keeps none)."""
    spec = importlib.util.spec_from_file_location("ltm_baseline", Path(__file__).parents[1] / "bench" / "ltm_baseline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_index(said: list[tuple[str, str, str]]) -> Any:
    """The reference index of (actor, session, text) messages, turn by turn as ``_write`` stores them, keyed by
    their rowid in a fresh store (1, 2, ... in the order given)."""
    index = load_baseline().KeywordIndex()
    turns: dict[tuple[str, str], int] = {}
    records = []
    for key, (actor, session, text) in enumerate(said, 1):
        turns[(actor, session)] = turns.get((actor, session), 0) + 1
        records.append((key, MessageRecord(actor, session, turns[(actor, session)], 0, "user", text, 1_683_550_000.0)))
    index.add(records)
    return index


def _write(store: SQLiteLongTermStore, actor: str, session: str, *texts: str) -> None:
    records = [MessageRecord(actor, session, n + 1, 0, "user", t, 1_683_550_000.0) for n, t in enumerate(texts)]
    store.write(records, np.zeros((len(records), 384), np.float32))


def test_the_reference_keyword_index_ranks_by_bm25_within_one_actor() -> None:
    index = reference_index([("alice", "s1", "hiking in the mountains"), ("alice", "s1", "we went hiking and hiking again"),
                             ("alice", "s1", "a quiet day"), ("bob", "s1", "hiking hiking hiking hiking")])
    hits = index.search("alice", fts_match(["hike"]), 10, (1.0, 0, 0, 0, 0))
    assert [key for key, _ in hits] == [2, 1]
    assert all(score > 0 for _, score in hits)


def test_a_message_is_found_by_its_neighbours_words_and_its_day(tmp_path: Path) -> None:
    from longterm.keyword import bm25f

    store = SQLiteLongTermStore(tmp_path / "ltm.db")
    _write(store, "alice", "s1", "Did you go to the concert?", "Yes, it was wonderful")
    index = store.actor_index("alice")
    assert (bm25f(index, ["concert"], (1.0, 0, 0.5, 0.5, 0)) > 0).tolist() == [True, True]
    assert (bm25f(index, ["concert"], (1.0, 0, 0, 0, 0)) > 0).tolist() == [True, False]
    assert (bm25f(index, query_terms("What happened on 8 May 2023?"), (1.0, 0, 0, 0, 1.0)) > 0).tolist() == [True, True]
    store.close()


def test_the_records_file_keeps_no_keyword_index(tmp_path: Path) -> None:
    """The search scores keywords in memory: a write maintains no FTS5 copy of the text (migration 4)."""
    store = SQLiteLongTermStore(tmp_path / "ltm.db")
    _write(store, "alice", "s1", "I keep bees on the roof")
    with store._db.connection() as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not any("fts" in name for name in tables) and "ltm_records" in tables
    store.close()


def test_owner_tokens_cannot_meet() -> None:
    owner_token = load_baseline().owner_token
    assert owner_token("ab") != owner_token("a-b")
    assert owner_token("a") != owner_token("a ")


# -- the embedding model ----------------------------------------------------------------------------

def test_the_shipped_model_puts_paraphrases_closer_than_unrelated_text() -> None:
    vectors = embedder().embed(["I am allergic to peanuts", "Peanuts make me ill", "The train leaves at noon"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert np.allclose(embedder().embed_one("I am allergic to peanuts"), vectors[0], atol=1e-5)


def test_records_appended_later_are_linked_into_their_session_and_old_snapshots_stay_as_they_were() -> None:
    from longterm.index import ActorBuffers

    vec = np.zeros(384, "<f4").tobytes()
    buffers = ActorBuffers(version=1, deletes=0, capacity=1)
    buffers.append([(1, "s1", 0, 1, 0, "", vec, "hiking", "", 0.0), (2, "s1", 0, 3, 0, "", vec, "hikes", "", 0.0)],
                   version=1)
    before = buffers.snapshot()
    buffers.append([(3, "s1", 0, 2, 0, "", vec, "cello", "", 0.0), (2, "s1", 0, 3, 0, "", vec, "hikes", "", 0.0)],
                   version=2)  # 2: skipped
    after = buffers.snapshot()
    assert (before.size, after.size) == (2, 3)
    assert before.next_index.tolist() == [1, -1]  # turn 1 -> turn 3 in the old snapshot
    assert after.next_index.tolist() == [2, -1, 1] and after.prev_index.tolist() == [-1, 2, 0]
    assert after.version == 2
    assert (after.df["hike"], after.df["cello"]) == (2, 1)


def test_the_model_is_converted_to_dynamic_int8_once_and_the_original_serves_if_that_fails(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import onnxruntime.quantization

    from longterm import embedding

    monkeypatch.setattr(embedding.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(embedding, "install_dir", lambda: tmp_path / "not-prepared")
    source, _ = embedding.model_files()
    converted = embedding.fast_model(source)
    assert converted != source and converted.parent.parent == tmp_path and converted.stat().st_size < source.stat().st_size
    assert embedding.fast_model(source) == converted  # cached
    converted.unlink()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", broken)
    assert embedding.fast_model(source) == source
    assert list(converted.parent.iterdir()) == []  # nothing half-written left behind
    original = embedding.Embedder(convert=False)
    assert original.model_path == source
    assert original.embed_one("peanuts") @ embedder().embed_one("peanuts") > 0.9


# -- keyword scores in memory ------------------------------------------------------------------------

CONVERSATION = ("Did you go to the concert on Friday?", "Yes, the concert was wonderful, a cello quartet",
                "I am planning a hiking trip to the mountains", "Hiking in May is lovely, take a rain jacket",
                "My sister plays the cello too")


def test_keyword_scores_are_fts5s_bm25_over_the_same_columns_for_a_lone_actor(tmp_path: Path) -> None:
    from longterm.keyword import bm25f

    store = SQLiteLongTermStore(tmp_path / "ltm.db")
    _write(store, "alice", "s1", *CONVERSATION)
    _write(store, "alice", "s2", "The quartet played in Oslo", "a concert hall by the harbour")
    index = store.actor_index("alice")
    reference = reference_index([("alice", "s1", t) for t in CONVERSATION] +
                                [("alice", "s2", t) for t in ("The quartet played in Oslo", "a concert hall by the harbour")])
    for terms in (["concert"], ["cello", "hiking"], ["quartet", "mountains", "jacket"], ["may", "2023"]):
        for columns in ((1.0, 0.5, 0.7, 0.5, 1.0), (1.0, 0, 0, 0, 0)):
            expected = dict(reference.search("alice", fts_match(terms), 100, columns))
            scores = bm25f(index, terms, columns)
            found = {int(index.ids[j]): scores[j] for j in np.flatnonzero(scores)}
            assert found.keys() == expected.keys()
            assert [found[k] for k in expected] == pytest.approx(list(expected.values()), rel=1e-9)
    store.close()


def test_an_actors_keyword_ranking_does_not_depend_on_other_actors(tmp_path: Path) -> None:
    from longterm.keyword import bm25f

    alone = SQLiteLongTermStore(tmp_path / "alone.db")
    crowded = SQLiteLongTermStore(tmp_path / "crowded.db")
    for store in (alone, crowded):
        _write(store, "alice", "s1", *CONVERSATION)
    for n in range(30):  # other actors who talk about cellos all the time
        _write(crowded, f"actor{n}", "s1", "cello cello cello", "the cello again", "more cello practice")
    terms = ["cello", "concert"]
    weights = (1.0, 0.5, 0.7, 0.5, 1.0)
    assert bm25f(alone.actor_index("alice"), terms, weights).tolist() == \
        bm25f(crowded.actor_index("alice"), terms, weights).tolist()
    alone.close()
    crowded.close()


def test_only_the_best_keyword_candidates_keep_their_score() -> None:
    from longterm.keyword import best_only

    assert best_only(np.array([0.0, 3.0, 1.0, 2.0, 0.0]), 2).tolist() == [0.0, 3.0, 0.0, 2.0, 0.0]
    assert best_only(np.array([0.0, 3.0, 1.0]), 5).tolist() == [0.0, 3.0, 1.0]


def test_words_with_accents_are_split_and_folded_as_fts5_does() -> None:
    from longterm.text import tokenize

    assert tokenize("Café naïve, ÉCOLE co-op 3rd_floor") == ["cafe", "naive", "ecole", "co", "op", "3rd", "floor"]
    assert stem("us") == "us"  # FTS5 leaves tokens under 3 characters unstemmed


def test_a_model_prepared_at_install_time_is_used_and_two_first_starts_at_once_leave_one_whole_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import subprocess
    import sys

    from longterm import embedding

    prepared = tmp_path / "venv-share"
    command = [sys.executable, "-m", "longterm.embedding", "--prepare", "--to", str(prepared)]
    root = Path(__file__).resolve().parent.parent
    processes = [subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1 and [p.name for p in prepared.iterdir()] == [Path(paths.pop()).name]  # no leftovers
    monkeypatch.setattr(embedding, "install_dir", lambda: prepared)
    monkeypatch.setattr(embedding.tempfile, "gettempdir", lambda: str(tmp_path / "never-used"))
    model = embedding.Embedder()
    assert model.model_path.parent == prepared
    assert not (tmp_path / "never-used").exists()  # nothing converted at start-up
    assert np.allclose(model.embed_one("peanuts"), embedder().embed_one("peanuts"), atol=1e-5)


def test_queries_are_embedded_before_the_writers_queued_texts() -> None:
    import threading

    from longterm.embedding import BACKGROUND, URGENT, EmbeddingWorker

    gate = threading.Event()
    order: list[int] = []

    def run(ids: list[int]) -> np.ndarray:
        gate.wait(10)
        order.append(ids[0])
        return np.zeros(384, np.float32)

    worker = EmbeddingWorker(run)
    first = worker.submit([0], BACKGROUND)  # the writer's text being embedded when the others arrive
    for _ in range(1000):
        if first.running():
            break
        threading.Event().wait(0.01)
    queued = [worker.submit([n], BACKGROUND) for n in (1, 2, 3)]
    query = worker.submit([99], URGENT)
    gate.set()
    for future in (first, *queued, query):
        future.result(10)
    assert order[1] == 99 and sorted(order) == [0, 1, 2, 3, 99]


def test_only_embedded_records_hold_a_row_of_the_vector_matrix(tmp_path: Path) -> None:
    """A search reads the whole vector matrix on every turn: the model's replies (not embedded) take no row of it,
    and a record whose vector comes later (the background writer's) gets its row then, unseen by older snapshots."""
    ltm = local_ltm(tmp_path / "ltm.db")
    try:
        for turn, text in enumerate(["I live in Lisbon with my cat.", "My sister Joana is a nurse."], start=1):
            ltm.query_vector(text)  # the search embeds the message before the model call: its record reuses it
            say(ltm, "alice", "s1", turn, text, f"You said '{text}'")
        index = ltm.store.actor_index("alice")
        assert index.size == 4 and len(index.dense) == 2  # two messages with vectors, two replies without
        assert index.dense_row.tolist() == [0, -1, 1, -1]
        query = ltm.query_vector("Where does my sister work?")
        cosines = index.cosines(query)
        assert cosines[1] == 0 and cosines[3] == 0
        assert np.allclose(cosines[[0, 2]], index.vectors[[0, 2]] @ query) and cosines[2] > cosines[0]

    finally:
        ltm.close()


def test_a_vector_added_later_takes_a_new_row_that_older_snapshots_do_not_see() -> None:
    from longterm.index import ActorBuffers

    unit = np.zeros(384, np.float32)
    unit[0] = 1.0
    buffers = ActorBuffers()
    buffers.append([(1, "s1", 0, 1, 0, "", unit.tobytes(), "I live in Lisbon", "", 1.7e9),
                    (2, "s1", 0, 1, 1, "", np.zeros(384, "<f4").tobytes(), "You said so", "", 1.7e9),
                    (3, "s2", 0, 1, 0, "", b"", "We adopted a greyhound", "", 1.7e9)], 1)  # its vector: later
    before = buffers.snapshot()
    buffers.add_vectors([(3, unit.tobytes())], embedded=1)
    after = buffers.snapshot()
    assert len(before.dense) == 1 and before.cosines(unit).tolist() == [1.0, 0.0, 0.0]
    assert not before.vectors_of([2]).any()  # its row came after this snapshot
    assert len(after.dense) == 2 and after.cosines(unit).tolist() == [1.0, 0.0, 1.0]
    assert after.vectors_of([2, 1]).tolist() == [unit.tolist(), [0.0] * 384]
