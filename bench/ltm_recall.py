"""Benchmark: long-term recall on LoCoMo-format conversations, through the product's own write and search.

usage: .venv/bin/python bench/ltm_recall.py PATH [--loo] [--scale] [--no-results]

PATH is any LoCoMo-format JSON file (a list of conversations; ``../shared/data/locomo/locomo-dev5.json``
is the dev split). Each conversation is one actor, each of its sessions one session id, each dialog
turn one record, written with ``LocalLongTermMemory.record_messages`` (the background writer: the
product's own write path, embedding included) into a fresh SQLite file. Every question of categories
1-4 then runs ``LocalLongTermMemory.search`` (the product's own search, top 10, nothing excluded).

Printed: recall@5 and recall@10 (mean fraction of a question's evidence turns retrieved) by category
and overall, beside plain BM25 (FTS5 over the turn text, query terms OR-ed, stop words dropped)
computed in the same run; what is *delivered* at the defaults (the records the hooks would inject:
``LTM_TOP_K``, ``LTM_MIN_SCORE``, ``LTM_MAX_TOKENS``), and how many records are injected for the
adversarial questions (category 5, which the conversation cannot answer); search latency p50/p99; write
cost per record; RSS the long-term memory added. ``--loo`` tunes the fusion weights on all but one conversation and scores the one left out,
for each conversation in turn. ``--scale`` measures search
latency with 10,000 records for the actor and 100,000 in the store (texts drawn from the file,
vectors random unit vectors: they cost the search the same).

Evidence ids are read as LoCoMo writes them ("D1:3"; "D:11:26" is read as "D11:26"; several in one
string are split on ";" or ","); ids not in the conversation are dropped, and a question left with no
evidence is skipped. Nothing of the file is copied anywhere: the scratch database is deleted after.

``--quick`` (PATH optional): a smoke run of everything above, ``--scale`` at 200 / 1,000 records, written to
``ltm_recall_quick.*``; without PATH on a tiny made-up sample (``bench/locomo_sample.py``), not LoCoMo.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import (fmt, machine_line, percentile, postgres_url, print_table, quick_run, save_plot, scratch_dir,
                    write_results)
from ltm_baseline import KeywordIndex, keyword_baseline

import numpy as np  # noqa: E402

from longterm.base import MessageRecord  # noqa: E402
from longterm.embedding import Embedder  # noqa: E402
from longterm.keyword import best_only, bm25f  # noqa: E402
from longterm.local import LocalLongTermMemory  # noqa: E402
from longterm.scoring import (DEFAULT_WEIGHTS, Weights, boost_speaker, fuse, smooth_neighbours,  # noqa: E402
                              top_k)
from longterm.sqlite_store import SQLiteLongTermStore  # noqa: E402
from longterm.text import find_names, informative_terms, query_terms, strip_names, tokenize  # noqa: E402

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
GOAL_RECALL_10 = 0.82
GOAL_P50_MS = 5.0


@dataclass(frozen=True)
class Turn:
    dia_id: str
    session_id: str
    turn: int
    speaker: str
    text: str
    caption: str
    created_at: float


@dataclass(frozen=True)
class Question:
    text: str
    evidence: tuple[str, ...]
    category: int


@dataclass
class Conversation:
    actor: str
    turns: list[Turn]
    questions: list[Question]
    speaker_a: str
    #: category 5: questions the conversation cannot answer (what should reach the model: nothing)
    adversarial: list[str] = field(default_factory=list)

    def dia_of(self) -> dict[tuple[str, int], str]:
        return {(t.session_id, t.turn): t.dia_id for t in self.turns}


def session_time(raw: str, fallback: float) -> float:
    """``"1:56 pm on 8 May, 2023"`` -> epoch seconds (UTC); the fallback when it does not parse."""
    for pattern in ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y"):
        try:
            return datetime.strptime(raw.strip(), pattern).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            pass
    match = re.search(r"(\d{1,2})\s+([A-Za-z]+),?\s+(\d{4})", raw or "")
    if match:
        try:
            return datetime.strptime(" ".join(match.groups()), "%d %B %Y").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            pass
    return fallback


def evidence_ids(raw: list[Any], valid: set[str]) -> tuple[str, ...]:
    out: list[str] = []
    for item in raw:
        for part in re.split(r"[;,]", str(item)):
            dia = part.strip().replace("D:", "D")
            if dia in valid and dia not in out:
                out.append(dia)
    return tuple(out)


def load(path: Path) -> list[Conversation]:
    conversations = []
    for number, sample in enumerate(json.loads(path.read_text())):
        conv = sample["conversation"]
        actor = re.sub(r"[^a-zA-Z0-9_-]", "-", str(sample.get("sample_id", f"conv-{number}"))) or f"conv-{number}"
        turns: list[Turn] = []
        n = 1
        while f"session_{n}" in conv:
            created = session_time(conv.get(f"session_{n}_date_time", ""), 1.6e9 + n * 86_400)
            for i, t in enumerate(conv[f"session_{n}"] or []):
                turns.append(Turn(t["dia_id"], f"session-{n}", i + 1, t.get("speaker", ""), t.get("text", ""),
                                  t.get("blip_caption", "") or "", created + i))
            n += 1
        valid = {t.dia_id for t in turns}
        questions = []
        adversarial = []
        for qa in sample.get("qa", []):
            if qa.get("category") == 5:
                adversarial.append(qa["question"])
            if qa.get("category") not in CATEGORIES:
                continue
            evidence = evidence_ids(qa.get("evidence") or [], valid)
            if evidence:
                questions.append(Question(qa["question"], evidence, qa["category"]))
        conversations.append(Conversation(actor, turns, questions, conv.get("speaker_a", ""), adversarial))
    return conversations


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


# -- writing -------------------------------------------------------------------------------------

def records_of(conv: Conversation) -> list[MessageRecord]:
    """One record per dialog turn; speaker_a's turns play the user, speaker_b's the assistant."""
    return [MessageRecord(conv.actor, t.session_id, t.turn, 0, "user" if t.speaker == conv.speaker_a else "assistant",
                          t.text, t.created_at, speaker=t.speaker, caption=t.caption) for t in conv.turns]


def write_all(ltm: LocalLongTermMemory, conversations: list[Conversation]) -> dict[str, float]:
    records = [r for c in conversations for r in records_of(c)]
    wall, cpu = time.perf_counter(), time.process_time()
    queue_ns = []
    for record in records:
        started = time.perf_counter_ns()
        ltm.record_messages([record])
        queue_ns.append(time.perf_counter_ns() - started)
    ltm.flush()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"records": len(records), "wall_ms_per_record": 1e3 * wall / len(records),
            "cpu_ms_per_record": 1e3 * cpu / len(records),
            "enqueue_us_p50": percentile(queue_ns, 50) / 1e3, "stored": ltm.stored}


# -- searching -----------------------------------------------------------------------------------

def recall(found: list[str], evidence: tuple[str, ...], k: int) -> float:
    return len(set(found[:k]) & set(evidence)) / len(evidence)


def evaluate(ltm: LocalLongTermMemory, conversations: list[Conversation]) -> dict[str, Any]:
    """Per question: recall@5/@10 of the product's search and of plain BM25, and the search latency."""
    baseline = KeywordIndex()  # the same records, keyed by their dialog turn
    for conv in conversations:
        baseline.add(((r.session_id, r.turn), r) for r in records_of(conv))
    rows: list[dict[str, Any]] = []
    latencies: list[int] = []
    for conv in conversations:
        dia = conv.dia_of()
        for q in conv.questions:
            started = time.perf_counter_ns()
            found = ltm.search(conv.actor, q.text, 10)
            latencies.append(time.perf_counter_ns() - started)
            ours = [dia[(m.session_id, m.turn)] for m in found]
            base = [dia[key] for key in keyword_baseline(baseline, conv.actor, q.text, 10)]
            rows.append({"category": q.category, "ours5": recall(ours, q.evidence, 5),
                         "ours10": recall(ours, q.evidence, 10), "bm25_5": recall(base, q.evidence, 5),
                         "bm25_10": recall(base, q.evidence, 10)})
    baseline.close()
    return {"rows": rows, "latency_ms": [ns / 1e6 for ns in latencies]}


def delivered(ltm: LocalLongTermMemory, conversations: list[Conversation]) -> dict[str, Any]:
    """What the hooks inject at the defaults (``LTM_TOP_K``, ``LTM_MIN_SCORE``, ``LTM_MAX_TOKENS``), not the top 10.

    Per question of categories 1-4: the recall of its evidence among the injected records and whether any
    evidence was injected; per adversarial question (category 5): how many records were injected.
    """
    from core.settings import Settings
    from hooks.longterm import select

    s = Settings.from_env({})
    recalls, any_hit, injected, adversarial = [], [], [], []
    for conv in conversations:
        dia = conv.dia_of()
        for q in conv.questions:
            chosen = select(ltm.search(conv.actor, q.text, s.ltm_top_k, min_score=s.ltm_min_score), s.ltm_min_score,
                            s.ltm_max_tokens)
            found = [dia[(m.session_id, m.turn)] for m in chosen]
            recalls.append(recall(found, q.evidence, len(found)) if found else 0.0)
            any_hit.append(bool(set(found) & set(q.evidence)))
            injected.append(len(chosen))
        for text in conv.adversarial:
            adversarial.append(len(select(ltm.search(conv.actor, text, s.ltm_top_k, min_score=s.ltm_min_score),
                                          s.ltm_min_score, s.ltm_max_tokens)))
    return {"top_k": s.ltm_top_k, "min_score": s.ltm_min_score, "recall": float(np.mean(recalls)),
            "any_evidence": float(np.mean(any_hit)), "injected_per_question": float(np.mean(injected)),
            "adversarial_questions": len(adversarial),
            "injected_per_adversarial": float(np.mean(adversarial)) if adversarial else 0.0,
            "adversarial_with_none": float(np.mean([n == 0 for n in adversarial])) if adversarial else 0.0}


def by_category(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[CATEGORIES[row["category"]]].append(row)
        groups["all"].append(row)
    return {name: {"n": len(g), **{key: float(np.mean([r[key] for r in g])) for key in
                                   ("ours5", "ours10", "bm25_5", "bm25_10")}} for name, g in groups.items()}


# -- tuning: leave one conversation out -----------------------------------------------------------

COLUMN_VARIANTS = ((1.0, 0.5, 0.7, 0.5, 1.0), (1.0, 0.5, 0.5, 0.3, 1.0), (1.0, 0.3, 0.5, 0.5, 0.5))
GRID = list(itertools.product(COLUMN_VARIANTS, (0.4, 0.5, 0.6), (0.0, 0.1, 0.2, 0.3), (0.0, 0.2, 0.3)))


def question_scores(ltm: LocalLongTermMemory, conv: Conversation) -> list[dict[str, Any]]:
    """Per question: the parts of the score (bm25 per column variant, cosine, names), to re-fuse in numpy."""
    index = ltm.store.actor_index(conv.actor)
    dia = conv.dia_of()
    by_rowid = ltm.store.fetch(conv.actor, [int(i) for i in index.ids])
    dia_at = np.array([dia[(by_rowid[int(i)].session_id, by_rowid[int(i)].turn)] for i in index.ids], dtype=object)
    out = []
    for q in conv.questions:
        named = find_names(q.text, index.names)
        text = (strip_names(q.text, named) or q.text) if named else q.text
        drop = {t for name in named for t in tokenize(name)}
        terms = informative_terms(query_terms(text, drop), index.df, index.size)
        bm25 = {columns: best_only(bm25f(index, terms, columns), DEFAULT_WEIGHTS.candidates)
                for columns in COLUMN_VARIANTS}
        cosine = index.cosines(ltm.query_vector(text))
        evidence = np.isin(dia_at, q.evidence)
        speakers = [index.speaker_codes[n] for n in named]
        out.append({"bm25": bm25, "cosine": cosine, "named": speakers, "evidence": evidence, "n": len(q.evidence),
                    "category": q.category, "index": index})
    return out


def grid_recalls(parts: list[dict[str, Any]], config: tuple[Any, ...]) -> np.ndarray:
    columns, dense, smooth, boost = config
    out = np.zeros((len(parts), 2))
    for i, p in enumerate(parts):
        index = p["index"]
        s = fuse(p["bm25"][columns], p["cosine"], dense)
        s = boost_speaker(s, index.speaker_ids, p["named"], boost)
        s = smooth_neighbours(s, index.prev_index, index.next_index, smooth)
        best = top_k(s, 10)
        hits = p["evidence"][best]
        out[i] = hits[:5].sum() / p["n"], hits.sum() / p["n"]
    return out


def leave_one_out(ltm: LocalLongTermMemory, conversations: list[Conversation]) -> dict[str, Any]:
    parts = [question_scores(ltm, c) for c in conversations]
    table = [{config: grid_recalls(p, config) for config in GRID} for p in parts]

    def mean10(config: tuple[Any, ...], which: list[int]) -> float:
        return float(np.concatenate([table[i][config][:, 1] for i in which]).mean())

    picks, held_out = [], []
    for i in range(len(conversations)):
        others = [j for j in range(len(conversations)) if j != i] or [i]
        best = max(GRID, key=lambda c: mean10(c, others))
        picks.append(best)
        held_out.append(table[i][best])
    pooled = np.concatenate(held_out)
    in_sample = max(GRID, key=lambda c: mean10(c, list(range(len(conversations)))))
    default = (DEFAULT_WEIGHTS.columns, DEFAULT_WEIGHTS.dense, DEFAULT_WEIGHTS.smooth, DEFAULT_WEIGHTS.speaker_boost)
    return {"loo_recall5": float(pooled[:, 0].mean()), "loo_recall10": float(pooled[:, 1].mean()),
            "picks": [str(p) for p in picks], "best_in_sample": str(in_sample),
            "best_in_sample_recall10": mean10(in_sample, list(range(len(conversations)))),
            "default_recall10": mean10(default, list(range(len(conversations)))) if default in GRID else None}


# -- scale ---------------------------------------------------------------------------------------

def scale(directory: Path, embedder: Embedder, conversations: list[Conversation], actor_records: int = 10_000,
          total: int = 100_000, store: Any = None) -> dict[str, Any]:
    """Search latency with ``actor_records`` records for the actor and ``total`` in the store (a SQLite file,
    or ``store``)."""
    rng = np.random.default_rng(7)
    texts = [t for c in conversations for t in c.turns]
    store = store if store is not None else SQLiteLongTermStore(directory / "scale.db")
    ltm = LocalLongTermMemory(store, embedder)
    started = time.perf_counter()
    actors = ["scale-actor"] + [f"other-{i}" for i in range((total - actor_records) // actor_records + 1)]
    written = 0
    for actor in actors:
        count = min(actor_records, total - written)
        if count <= 0:
            break
        batch = []
        for n in range(count):
            t = texts[int(rng.integers(len(texts)))]
            batch.append(MessageRecord(actor, f"s{n // 20}", n % 20 + 1, 0, "user", t.text, t.created_at,
                                       speaker=t.speaker, caption=t.caption))
        vectors = rng.standard_normal((count, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for start in range(0, count, 1000):
            store.write(batch[start:start + 1000], vectors[start:start + 1000])
        written += count
    build_s = time.perf_counter() - started
    questions = [q.text for c in conversations for q in c.questions][:300]
    ltm.search("scale-actor", questions[0], 10)  # loads the actor's vectors into the cache once
    cold, warm, no_embed, cold_cpu, warm_cpu = [], [], [], [], []
    for q in questions:
        started_ns, cpu_ns = time.perf_counter_ns(), time.process_time_ns()
        ltm.search("scale-actor", q, 10)
        cold.append(time.perf_counter_ns() - started_ns)  # includes embedding the query
        cold_cpu.append(time.process_time_ns() - cpu_ns)
        started_ns, cpu_ns = time.perf_counter_ns(), time.process_time_ns()
        ltm.search("scale-actor", q, 10)
        warm.append(time.perf_counter_ns() - started_ns)  # the query vector is remembered: the rest of the search
        warm_cpu.append(time.process_time_ns() - cpu_ns)
    for q in questions[:50]:
        started_ns = time.perf_counter_ns()
        ltm.embedder.embed_one(q)
        no_embed.append(time.perf_counter_ns() - started_ns)
    ltm.close()
    return {"actor_records": actor_records, "store_records": written, "build_s": round(build_s, 1),
            "search_p50_ms": percentile(cold, 50) / 1e6, "search_p99_ms": percentile(cold, 99) / 1e6,
            "search_without_embedding_p50_ms": percentile(warm, 50) / 1e6,
            "search_without_embedding_p99_ms": percentile(warm, 99) / 1e6,
            "search_cpu_p50_ms": percentile(cold_cpu, 50) / 1e6, "search_cpu_p99_ms": percentile(cold_cpu, 99) / 1e6,
            "search_without_embedding_cpu_p50_ms": percentile(warm_cpu, 50) / 1e6,
            "query_embedding_p50_ms": percentile(no_embed, 50) / 1e6}


# -- report --------------------------------------------------------------------------------------

def plot(categories: dict[str, dict[str, float]], title: str) -> None:
    import matplotlib.pyplot as plt

    names = [n for n in ("single-hop", "multi-hop", "temporal", "open-domain", "all") if n in categories]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.2
    for offset, key, label, color in ((-1.5, "bm25_5", "BM25-OR @5", "#bbbbbb"), (-0.5, "bm25_10", "BM25-OR @10", "#777777"),
                                      (0.5, "ours5", "ours @5", "#9ecae1"), (1.5, "ours10", "ours @10", "#3182bd")):
        values = [categories[n][key] for n in names]
        bars = ax.bar(x + offset * width, values, width, label=label, color=color)
        for bar, value in zip(bars, values):
            ax.annotate(f"{value:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=6)
    ax.axhline(GOAL_RECALL_10, color="tab:red", lw=0.8, ls="--", label=f"goal @10 = {GOAL_RECALL_10}")
    ax.set_xticks(x, [f"{n}\n(n={categories[n]['n']})" for n in names], fontsize=8)
    ax.set_ylabel("recall (fraction of evidence turns retrieved)")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=5, loc="upper left")
    fig.suptitle(machine_line(), fontsize=7, y=0.01)
    save_plot(fig, "ltm_recall")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, nargs="?", help="a LoCoMo-format file (optional with --quick)")
    parser.add_argument("--loo", action="store_true", help="leave-one-conversation-out tuning figures")
    parser.add_argument("--scale", action="store_true", help="search latency at 10k / 100k records")
    parser.add_argument("--no-results", action="store_true", help="print only (no bench/results files)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of every part (PATH: a tiny sample)")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite",
                        help="where the records live (postgres: a private pgserver PostgreSQL with pgvector)")
    args = parser.parse_args()
    if quick_run(args.quick):
        args.loo = args.scale = True
    if args.path is None and args.quick:
        from locomo_sample import write_sample

        print("note: no LoCoMo file given: a tiny made-up sample (bench/locomo_sample.py), not LoCoMo")
        with tempfile.TemporaryDirectory(prefix="ltm-recall-sample-") as sample_dir:
            args.path = write_sample(Path(sample_dir))
            conversations = load(args.path)
    elif args.path is None:
        parser.error("PATH is required (a LoCoMo-format file) unless --quick")
    else:
        conversations = load(args.path)
    questions = sum(len(c.questions) for c in conversations)
    print(f"{args.path.name}: {len(conversations)} conversations, {sum(len(c.turns) for c in conversations)} turns, "
          f"{questions} questions of categories 1-4 with evidence")
    before = rss_mb()
    embedder = Embedder()
    with scratch_dir("ltm") as directory, (postgres_url() if args.backend == "postgres" else nullcontext()) as url:
        if args.backend == "postgres":
            from longterm.postgres import PostgresLongTermMemory
            from longterm.postgres_store import PostgresLongTermStore

            ltm = PostgresLongTermMemory(PostgresLongTermStore(url), embedder)
        else:
            ltm = LocalLongTermMemory(SQLiteLongTermStore(directory / "longterm.db"), embedder)
        ltm.query_cache_size = questions + 16
        write = write_all(ltm, conversations)
        result = evaluate(ltm, conversations)
        injected = delivered(ltm, conversations)
        added = rss_mb() - before
        categories = by_category(result["rows"])
        latency = result["latency_ms"]
        extra: dict[str, Any] = {}
        if args.loo:
            extra["loo"] = leave_one_out(ltm, conversations)
        ltm.close()
        if args.scale:
            extra["scale"] = scale(directory, embedder, conversations, *((200, 1000) if args.quick else ()),
                                   store=PostgresLongTermStore(url) if args.backend == "postgres" else None)
    print_table(f"Recall of evidence turns ({args.path.name}; ours = the product's search, BM25-OR = the baseline)",
                ["category", "questions", "BM25-OR @5", "BM25-OR @10", "ours @5", "ours @10"],
                [[name, c["n"], fmt(c["bm25_5"]), fmt(c["bm25_10"]), fmt(c["ours5"]), fmt(c["ours10"])]
                 for name, c in categories.items()])
    print_table("Cost", ["measure", "value"], [
        ["search p50 / p99 ms (embedding the query included)",
         f"{percentile(latency, 50):.2f} / {percentile(latency, 99):.2f}"],
        ["write: wall ms per record (background writer, embedding included)", fmt(write["wall_ms_per_record"])],
        ["write: CPU ms per record", fmt(write["cpu_ms_per_record"])],
        ["record_exchange / record_messages on the request path, p50 us", fmt(write["enqueue_us_p50"])],
        ["RSS added by long-term memory (model, store, vectors) MB", f"{added:.0f}"],
    ])
    print_table(f"Delivered at the defaults (top_k {injected['top_k']}, min_score {injected['min_score']}): what the "
                "model is handed", ["measure", "value"], [
        ["recall of evidence among the injected records", fmt(injected["recall"])],
        ["questions with at least one evidence record injected", fmt(injected["any_evidence"])],
        ["records injected per question (categories 1-4)", fmt(injected["injected_per_question"])],
        [f"records injected per adversarial question (category 5, {injected['adversarial_questions']})",
         fmt(injected["injected_per_adversarial"])],
        ["adversarial questions with nothing injected", fmt(injected["adversarial_with_none"])],
    ])
    if "loo" in extra:
        loo = extra["loo"]
        print(f"\nleave-one-conversation-out: recall@5 {loo['loo_recall5']:.3f}, recall@10 {loo['loo_recall10']:.3f}; "
              f"picks {loo['picks']}; best in sample {loo['best_in_sample']} "
              f"{loo['best_in_sample_recall10']:.3f}; the defaults in sample {loo['default_recall10']}")
    if "scale" in extra:
        s = extra["scale"]
        print(f"\nscale: {s['actor_records']} records for the actor, {s['store_records']} in the store: search p50 "
              f"{s['search_p50_ms']:.2f} ms p99 {s['search_p99_ms']:.2f} ms; without embedding the query p50 "
              f"{s['search_without_embedding_p50_ms']:.2f} ms p99 {s['search_without_embedding_p99_ms']:.2f} ms; "
              f"query embedding p50 {s['query_embedding_p50_ms']:.2f} ms; CPU time per search p50 "
              f"{s['search_cpu_p50_ms']:.2f} ms p99 {s['search_cpu_p99_ms']:.2f} ms, without embedding p50 "
              f"{s['search_without_embedding_cpu_p50_ms']:.2f} ms")
    overall = categories["all"]["ours10"]
    print(f"\ngoal recall@10 >= {GOAL_RECALL_10}: {'met' if overall >= GOAL_RECALL_10 else 'MISSED'} ({overall:.3f})")
    if not args.no_results:
        data = {"file": args.path.name, "conversations": len(conversations), "questions": questions,
                "weights": str(DEFAULT_WEIGHTS), "categories": categories,
                "search_p50_ms": percentile(latency, 50), "search_p99_ms": percentile(latency, 99),
                "write": write, "rss_added_mb": round(added, 1), "delivered": injected, **extra}
        write_results("ltm_recall" if args.backend == "sqlite" else f"ltm_recall_{args.backend}", data)
        if args.backend == "sqlite":
            plot(categories, f"Long-term recall on {args.path.name} ({len(conversations)} conversations, "
                             f"{questions} questions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
