"""Benchmark: long-term memory where users meet it, played through the product over HTTP at its defaults.

usage: .venv/bin/python bench/ltm_natural.py [SET.json] [--quick] [--sweep] [-v] [--no-results]
       .venv/bin/python bench/ltm_natural.py --fit SET.json [SET.json ...]

SET is a JSON file (default ``bench/data/ltm_natural.json``) in this format:

    {"actor": "marta",                                    optional (default "natural")
     "sessions": [{"session": "intro",                    one conversation, played in file order
                   "messages": ["Hi! Nice to meet you.",  a message that states nothing worth recalling
                                {"fact": "job", "text": "I work as a lighthouse keeper."}, ...]}, ...],
     "questions": [{"text": "What do I do for a living?",
                    "answer": ["job"],                    fact ids any one of which answers it
                    "outdated": ["home_lisbon"]}, ...],   optional: older statements the answer replaces
     "unanswerable": ["What is the capital of Australia?",             a string, or with its kind:
                      {"text": "How long do collies live?", "kind": "related"}, ...]}

An unanswerable question's optional ``kind`` is one of ``UNANSWERABLE_KINDS``: "general" (general knowledge,
no link to the user), "personal" (about the user, on a subject never mentioned), "related" (on a subject the
user did talk about: "What was my first pet's name?" after talking of the dog), "chatter". Noise is then
printed per kind too: a record on the subject of a "related" question may help the model even though it does
not answer it; for the others anything injected is unrelated.

Two statements with the same ``fact`` id are near-duplicates (the user said the same thing twice).
Extra keys ("about", "date", ...) are ignored.

How it is played: an in-process server (``agent.app`` with ``agent.build_assistant``: the settings'
defaults, the echo model, SQLite sessions and long-term records in a scratch directory; ``LTM_*``
variables of the environment apply) receives every message of every session as a turn, over HTTP
(``POST /invocations``, one session id per session). The background writer is flushed, then every
question and every unanswerable question is asked in a NEW session with ``"explain": true``; the
``memory.long_term`` report says which records were injected into the model's system prompt. Each
question's own exchange is recorded like any other turn (flushed before the next question), as in real
use, so later questions also meet the earlier ones in memory.

Printed:
- **delivered hit rate**: questions for which one of the answer's statements (the user's own message,
  not the model's reply to it) was injected; beside it the same counting the echo reply that repeats it;
- **noise**: records injected per unanswerable question (and per answerable one);
- **duplicates**: injected records stating a fact another injected record already states;
- **updates**: for each question with ``outdated`` statements, whether the newest statement was injected
  and ranked above every outdated one;
- **latency and CPU**: long-term search wall and CPU time per turn (the query's embedding included), and
  the CPU of the background writer per turn (embedding and storing the two records).

``--quick``: the first two sessions and their questions (seconds). ``--sweep``: plays the set again at
several ``LTM_MIN_SCORE`` values and prints hit rate and noise at each (the default is chosen from the
calibration set's sweep).
``--fit``: tells each set's sessions, then fits the relevance model (``longterm.relevance.COEFFICIENTS``) on
the candidates of every question of every set given: run it on the calibration sets
(``bench/data/ltm_calibration*.json``), never on a set the benchmark reports. ``-v``: lists the missed questions and the noise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from common import fmt, percentile, print_table, quick_run, scratch_dir, write_results

import agent  # noqa: E402
from core.settings import Settings  # noqa: E402

DEFAULT_SET = Path(__file__).resolve().parent / "data" / "ltm_natural.json"
SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
GOAL_HIT_RATE = 0.9
GOAL_NOISE = 0.3
UNANSWERABLE_KINDS = ("general", "personal", "related", "chatter")
SWEEP = (0.0, 0.02, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)


@dataclass(frozen=True)
class Question:
    text: str
    answer: tuple[str, ...] = ()
    outdated: tuple[str, ...] = ()


@dataclass
class NaturalSet:
    actor: str
    sessions: list[tuple[str, list[tuple[str, str | None]]]]  # (session id, [(text, fact id or None)])
    questions: list[Question]
    unanswerable: list[str]
    #: an unanswerable question's kind, where the set gives one (``UNANSWERABLE_KINDS``)
    kinds: dict[str, str] = field(default_factory=dict)

    @property
    def statements(self) -> int:
        return sum(1 for _, messages in self.sessions for _, fact in messages if fact)


def load(path: Path) -> NaturalSet:
    """The set in ``path``; a clear ``ValueError`` naming what is wrong in a malformed file."""
    raw = json.loads(path.read_text())
    sessions = []
    facts: set[str] = set()
    for number, session in enumerate(raw["sessions"]):
        messages: list[tuple[str, str | None]] = []
        for message in session["messages"]:
            if isinstance(message, str):
                messages.append((message, None))
            else:
                messages.append((message["text"], str(message["fact"])))
                facts.add(str(message["fact"]))
        sessions.append((str(session.get("session") or f"session-{number + 1}"), messages))
    questions = [Question(q["text"], tuple(q["answer"]), tuple(q.get("outdated", ()))) for q in raw["questions"]]
    unknown = sorted({f for q in questions for f in (*q.answer, *q.outdated)} - facts)
    if unknown:
        raise ValueError(f"{path}: questions name facts no message states: {', '.join(unknown)}")
    unanswerable, kinds = [], {}
    for item in raw.get("unanswerable", []):
        text = item if isinstance(item, str) else str(item["text"])
        unanswerable.append(text)
        if not isinstance(item, str) and item.get("kind") is not None:
            if item["kind"] not in UNANSWERABLE_KINDS:
                raise ValueError(f"{path}: unanswerable {text!r}: kind {item['kind']!r} is not one of "
                                 f"{', '.join(UNANSWERABLE_KINDS)}")
            kinds[text] = item["kind"]
    return NaturalSet(str(raw.get("actor") or "natural"), sessions, questions, unanswerable, kinds)


def quick(data: NaturalSet) -> NaturalSet:
    """The first two sessions, the questions they can answer (at most 12) and 6 unanswerable ones."""
    sessions = data.sessions[:2]
    told = {fact for _, messages in sessions for _, fact in messages if fact}
    questions = [q for q in data.questions if set(q.answer) <= told and set(q.outdated) <= told][:12]
    return NaturalSet(data.actor, sessions, questions, data.unanswerable[:6], data.kinds)


@dataclass
class Asked:
    """One question as the model met it: the injected records, best first."""

    question: Question | None  # None: an unanswerable question
    text: str
    injected: list[dict[str, Any]]  # record_id, session_id, turn, score, plus role and fact (looked up)
    search_ms: float = 0.0
    #: long-term CPU of the turn: the search on the request thread, every embedding, the store's writes
    cpu_ms: float = 0.0
    embed_cpu_ms: float = 0.0


class Meter:
    """CPU spent by long-term memory, per thread where it runs, so a turn's share can be read off.

    The search on the request thread, every embedding on the embedding worker's thread, and the
    store's writes on the background writer's thread (each timed with ``time.thread_time``).
    """

    def __init__(self) -> None:
        self.search_wall_ms = 0.0
        self.search_cpu_ms = 0.0
        self.embed_cpu_ms = 0.0
        self.store_cpu_ms = 0.0
        self.searches = 0

    def total(self) -> tuple[float, float, float, float]:
        return self.search_wall_ms, self.search_cpu_ms, self.embed_cpu_ms, self.store_cpu_ms

    def install(self, ltm: Any) -> None:
        search, write = ltm.search, ltm.store.write
        worker = ltm.embedder._worker
        run = worker._run

        def timed_search(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return search(*args, **kwargs)
            finally:
                self.search_cpu_ms += (time.thread_time() - cpu) * 1e3
                self.search_wall_ms += (time.perf_counter() - wall) * 1e3
                self.searches += 1

        def timed_run(*args: Any) -> Any:
            cpu = time.thread_time()
            try:
                return run(*args)
            finally:
                self.embed_cpu_ms += (time.thread_time() - cpu) * 1e3

        def timed_write(*args: Any, **kwargs: Any) -> Any:
            cpu = time.thread_time()
            try:
                return write(*args, **kwargs)
            finally:
                self.store_cpu_ms += (time.thread_time() - cpu) * 1e3

        ltm.search = timed_search
        ltm.store.write = timed_write
        worker._run = timed_run


def settings_for(directory: Path, min_score: float | None) -> Settings:
    env = {"LOG_LEVEL": "WARNING", **{k: v for k, v in os.environ.items() if k.startswith("LTM_")}}
    if min_score is not None:
        env["LTM_MIN_SCORE"] = str(min_score)
    return replace(Settings.from_env(env), memory_backend="sqlite", session_db=directory / "sessions.db",
                   model_provider="echo", long_term_memory=None)


def play(data: NaturalSet, min_score: float | None = None,
         fit: list[tuple[Any, Any]] | None = None) -> tuple[list[Asked], dict[str, Any]]:
    """Tell the sessions, then ask every question in a new session; what was injected for each.

    ``fit``: collect (features, labels) of every question's candidates instead of asking (``--fit``).
    """
    from starlette.testclient import TestClient

    with scratch_dir("ltm-natural") as directory:
        settings = settings_for(directory, min_score)
        assistant = agent.build_assistant(settings)
        ltm = assistant.ltm
        assert ltm is not None, "long-term memory is off with these settings"
        meter = Meter()
        meter.install(ltm)
        agent.set_assistant(assistant)
        fact_at: dict[tuple[str, int], str] = {}
        try:
            with TestClient(agent.app) as client:
                def turn(session: str, text: str, explain: bool = False) -> dict[str, Any]:
                    response = client.post("/invocations", json={"message": text, "actor_id": data.actor,
                                                                 "explain": explain},
                                           headers={SESSION_HEADER: session})
                    assert response.status_code == 200, response.text
                    return response.json()

                for session, messages in data.sessions:
                    for text, fact in messages:
                        answer = turn(session, text)
                        if fact:
                            fact_at[(session, answer["message_count"])] = fact
                ltm.flush()
                asked: list[Asked] = []
                if fit is not None:
                    fit.extend(candidates(ltm, data, fact_at))
                    return [], {}
                for n, item in enumerate([*data.questions, *data.unanswerable]):
                    question = item if isinstance(item, Question) else None
                    text = item.text if isinstance(item, Question) else item
                    before = meter.total()
                    answer = turn(f"ask-{n}", text, explain=True)
                    ltm.flush()  # this turn's two records are stored: the next question meets them
                    wall, search_cpu, embed_cpu, store_cpu = (b - a for a, b in zip(before, meter.total()))
                    injected = answer["memory"]["long_term"]  # each with its role and text (the explain report)
                    for item_ in injected:
                        item_["fact"] = fact_at.get((item_["session_id"], item_["turn"]))
                    asked.append(Asked(question, text, injected, wall, search_cpu + embed_cpu + store_cpu,
                                       embed_cpu))
        finally:
            agent.set_assistant(None)
            assistant.close()
        info = {"min_score": settings.ltm_min_score, "top_k": settings.ltm_top_k,
                "max_tokens": settings.ltm_max_tokens}
        return asked, info


def candidates(ltm: Any, data: NaturalSet, fact_at: dict[tuple[str, int], str]) -> list[tuple[Any, Any]]:
    """Per question: the relevance features of its candidate pool and whether each answers it.

    A candidate answers when it is the user's statement of one of the question's facts; everything
    else (other statements, questions, small talk, the model's replies) is a negative, and every
    candidate of an unanswerable question is one.
    """
    import numpy as np

    from longterm.local import POOL
    from longterm.relevance import features
    from longterm.scoring import top_k

    index = ltm.store.actor_index(data.actor)
    rows = ltm.store.fetch(data.actor, [int(i) for i in index.ids])
    fact_of = []
    for i in index.ids:
        row = rows[int(i)]
        fact_of.append(fact_at.get((row.session_id, row.turn)) if row.role == "user" else None)
    out = []
    for item in [*data.questions, *data.unanswerable]:
        text, answer = (item.text, set(item.answer)) if isinstance(item, Question) else (item, set())
        scored = ltm.score(data.actor, index, text)
        pool = top_k(scored.rank, POOL)
        x = features(scored.cosine[pool], scored.overlap[pool], scored.bm25[pool], index.kinds[pool],
                     scored.about_asker)
        y = np.array([fact_of[j] in answer for j in pool], float)
        out.append((x, y))
    return out


def fit_coefficients(paths: list[Path], sets: list[NaturalSet]) -> tuple[float, ...]:
    """Fit the relevance model on the candidates of every question of every set (each set told in its own store)."""
    import numpy as np

    from longterm.relevance import fit

    collected: list[tuple[Any, Any]] = []
    for data in sets:
        play(data, 0.0, fit=collected)
    x = np.concatenate([c[0] for c in collected])
    y = np.concatenate([c[1] for c in collected])
    coefficients = fit(x, y)
    print(f"{', '.join(p.name for p in paths)}: {len(collected)} questions, {len(y)} candidates, "
          f"{int(y.sum())} relevant")
    print("relevance coefficients (cosine, text overlap, saturated bm25, question, chatter, reply, not about the "
          "asker, bias):")
    print(f"COEFFICIENTS = {coefficients}")
    return coefficients


# -- scoring -----------------------------------------------------------------------------------

def delivered(a: Asked, min_score: float = 0.0, lenient: bool = False) -> list[dict[str, Any]]:
    return [i for i in a.injected if i["score"] >= min_score and (lenient or i["role"] == "user" or not i["fact"])]


def hit(a: Asked, min_score: float = 0.0, lenient: bool = False) -> bool:
    assert a.question is not None
    return any(i["fact"] in a.question.answer for i in delivered(a, min_score, lenient))


def noise(a: Asked, min_score: float = 0.0) -> int:
    return sum(1 for i in a.injected if i["score"] >= min_score)


def duplicates(a: Asked) -> int:
    """Injected user statements of a fact that an earlier injected statement already states."""
    seen: set[str] = set()
    count = 0
    for i in a.injected:
        if i["fact"] and i["role"] == "user":
            count += i["fact"] in seen
            seen.add(i["fact"])
    return count


def update_case(a: Asked) -> tuple[bool, str]:
    """(passed, how): the newest statement injected, ranked above every outdated one injected."""
    assert a.question is not None
    facts = [i["fact"] for i in a.injected if i["role"] == "user"]
    newest = next((r for r, f in enumerate(facts) if f in a.question.answer), None)
    stale = [r for r, f in enumerate(facts) if f in a.question.outdated]
    if newest is None:
        return False, "newest not injected" + (f", outdated at {stale[0] + 1}" if stale else "")
    if stale and stale[0] < newest:
        return False, f"outdated at {stale[0] + 1} above newest at {newest + 1}"
    return True, f"newest at {newest + 1}" + (f", outdated at {stale[0] + 1}" if stale else ", outdated not injected")


def summary(asked: list[Asked], min_score: float = 0.0, kinds: dict[str, str] | None = None) -> dict[str, Any]:
    answerable = [a for a in asked if a.question is not None]
    unanswerable = [a for a in asked if a.question is None]
    updates = [a for a in answerable if a.question.outdated]  # type: ignore[union-attr]
    by_kind: dict[str, list[Asked]] = {}
    for a in unanswerable:
        if kinds and a.text in kinds:
            by_kind.setdefault(kinds[a.text], []).append(a)
    unrelated = [a for kind, of_kind in by_kind.items() if kind != "related" for a in of_kind]
    return {
        #: records per unanswerable question on a subject the user never talked about (sets that give kinds)
        "noise_unrelated": (sum(noise(a, min_score) for a in unrelated) / len(unrelated)) if unrelated else None,
        "noise_by_kind": {kind: {"questions": len(of_kind), "noise": sum(noise(a, min_score) for a in of_kind)
                                 / len(of_kind)} for kind, of_kind in sorted(by_kind.items())},
        "hit_rate": sum(hit(a, min_score) for a in answerable) / max(len(answerable), 1),
        "hit_rate_lenient": sum(hit(a, min_score, True) for a in answerable) / max(len(answerable), 1),
        "noise": sum(noise(a, min_score) for a in unanswerable) / max(len(unanswerable), 1),
        "injected_per_answerable": sum(noise(a, min_score) for a in answerable) / max(len(answerable), 1),
        "duplicates_per_question": sum(duplicates(a) for a in answerable) / max(len(answerable), 1),
        "updates_passed": sum(update_case(a)[0] for a in updates) / max(len(updates), 1),
        "updates": len(updates),
    }


def report(data: NaturalSet, asked: list[Asked], info: dict[str, Any], verbose: bool) -> dict[str, Any]:
    s = summary(asked, kinds=data.kinds)
    answerable = [a for a in asked if a.question is not None]
    search_ms = [a.search_ms for a in asked]
    embed_cpu = [a.embed_cpu_ms for a in asked]
    per_turn = [a.cpu_ms for a in asked]
    print_table(f"Delivered (top_k {info['top_k']}, min_score {info['min_score']}, max_tokens {info['max_tokens']}; "
                f"{data.statements} statements, {len(answerable)} questions, {len(asked) - len(answerable)} "
                "unanswerable)", ["measure", "value", "goal"], [
        ["delivered hit rate (the user's statement injected)", fmt(s["hit_rate"]), f">= {GOAL_HIT_RATE}"],
        ["  counting the model's reply that repeats it", fmt(s["hit_rate_lenient"]), ""],
        ["noise: records injected per unanswerable question", fmt(s["noise"]), f"<= {GOAL_NOISE}"],
        *[[f"  {kind} ({of_kind['questions']} questions)", fmt(of_kind["noise"]),
           f"<= {GOAL_NOISE}" if kind != "related" else ""]
          for kind, of_kind in s["noise_by_kind"].items()],
        ["records injected per answerable question", fmt(s["injected_per_answerable"]), ""],
        ["duplicate statements injected per question", fmt(s["duplicates_per_question"]), "0"],
        [f"update cases: newest statement first ({s['updates']})", fmt(s["updates_passed"]), "1.0"],
        ["long-term search p50 / p99 ms (wall, query embedding included)",
         f"{percentile(search_ms, 50):.2f} / {percentile(search_ms, 99):.2f}", ""],
        ["long-term CPU per turn p50 / mean ms (search + writes, embeddings included)",
         f"{percentile(per_turn, 50):.2f} / {sum(per_turn) / len(per_turn):.2f}", "<= 8"],
        ["  of which embedding, p50 ms", f"{percentile(embed_cpu, 50):.2f}", ""],
    ])
    rows = []
    for a in answerable:
        if a.question.outdated:  # type: ignore[union-attr]
            ok, how = update_case(a)
            rows.append([a.text, "pass" if ok else "FAIL", how])
    if rows:
        print_table("Update cases (the newest statement must rank above the outdated one)",
                    ["question", "", "ranks among the user's injected statements"], rows)
    if verbose:
        print("\nMissed questions (what was injected instead):")
        for a in answerable:
            if not hit(a):
                got = "; ".join(f"{i['role']}:{i['fact'] or '-'}:{i['score']:.2f}:{i['text'][:40]!r}"
                                for i in a.injected) or "nothing"
                print(f"  {a.text!r} wants {a.question.answer}: {got}")  # type: ignore[union-attr]
        print("\nNoise (unanswerable questions that got records):")
        for a in asked:
            if a.question is None and a.injected:
                print(f"  {a.text!r} ({data.kinds.get(a.text, 'no kind')}): " + "; ".join(f"{i['role']}:{i['score']:.2f}:{i['text'][:40]!r}"
                                                    for i in a.injected))
    return {**s, "search_p50_ms": percentile(search_ms, 50), "embed_cpu_p50_ms": percentile(embed_cpu, 50),
            "ltm_cpu_per_turn_p50_ms": percentile(per_turn, 50), "ltm_cpu_per_turn_mean_ms": sum(per_turn) / len(per_turn),
            **info}


def sweep(data: NaturalSet) -> list[dict[str, float]]:
    """The set played afresh at each threshold: the search gives the places of ``LTM_TOP_K`` to records at or
    above it, so a threshold changes what is found, not only what is cut."""
    rows = []
    for threshold in SWEEP:
        asked, _ = play(data, threshold)
        rows.append({"min_score": threshold, **summary(asked, threshold, data.kinds)})
    print_table("Threshold sweep (the set played at each LTM_MIN_SCORE; the default is chosen from the "
                "calibration set's)",
                ["LTM_MIN_SCORE", "hit rate", "noise / unanswerable", "of them unrelated", "injected / answerable"],
                [[f"{r['min_score']:.2f}", fmt(r["hit_rate"]), fmt(r["noise"]),
                  "-" if r["noise_unrelated"] is None else fmt(r["noise_unrelated"]), fmt(r["injected_per_answerable"])]
                 for r in rows])
    return rows


def plot(rows: list[dict[str, float]], default: float, title: str, name: str = "ltm_natural") -> None:
    """Hit rate and noise against LTM_MIN_SCORE (the sweep), the default marked."""
    import matplotlib.pyplot as plt

    from common import machine_line, save_plot

    fig, ax = plt.subplots(figsize=(8, 4))
    x = [r["min_score"] for r in rows]
    ax.plot(x, [r["hit_rate"] for r in rows], "o-", color="#3182bd", label="delivered hit rate")
    ax.plot(x, [r["noise"] for r in rows], "s-", color="#de2d26", label="records per unanswerable question")
    if all(r.get("noise_unrelated") is not None for r in rows):
        ax.plot(x, [r["noise_unrelated"] for r in rows], "s:", color="#fc9272",
                label="records per unanswerable question on a subject never mentioned")
    ax.plot(x, [r["injected_per_answerable"] for r in rows], "^--", color="#999999", lw=0.8,
            label="records per answerable question")
    ax.axhline(GOAL_HIT_RATE, color="#3182bd", lw=0.6, ls=":")
    ax.axhline(GOAL_NOISE, color="#de2d26", lw=0.6, ls=":")
    ax.axvline(default, color="black", lw=0.8, ls="--", label=f"default LTM_MIN_SCORE = {default}")
    ax.set_xlabel("LTM_MIN_SCORE (relevance probability)")
    ax.set_ylim(0, max(2.5, max(r["noise"] for r in rows if r["min_score"] > 0) * 1.1))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(machine_line(), fontsize=7, y=-0.03)
    save_plot(fig, name)


def results_name(path: Path) -> str:
    """``ltm_natural`` for the default set, ``ltm_natural_<stem>`` for another (so one run does not overwrite the
    other's results)."""
    return "ltm_natural" if path.resolve() == DEFAULT_SET.resolve() else f"ltm_natural_{path.stem}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", type=Path, nargs="*", metavar="SET",
                        help=f"the set to play (default {DEFAULT_SET.name}); with --fit, one or more")
    parser.add_argument("--quick", action="store_true", help="two sessions, 12 questions: seconds")
    parser.add_argument("--sweep", action="store_true", help="hit rate and noise over LTM_MIN_SCORE values")
    parser.add_argument("--fit", action="store_true",
                        help="fit the relevance model on these sets (calibration sets, never the benchmark's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list the misses and the noise")
    parser.add_argument("--no-results", action="store_true", help="print only (no bench/results files)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    paths = args.paths or [DEFAULT_SET]
    if len(paths) > 1 and not args.fit:
        parser.error("play one set at a time (several sets only with --fit)")
    sets = []
    for path in paths:
        try:
            data = load(path)
        except (OSError, ValueError, KeyError, TypeError) as e:  # a set that is not in the format above
            print(f"{path}: not a usable set: {type(e).__name__}: {e} (the format is in --help)", file=sys.stderr)
            return 2
        if quick_run(args.quick):
            data = quick(data)
        print(f"{path.name}: {len(data.sessions)} sessions, {data.statements} statements, "
              f"{len(data.questions)} questions, {len(data.unanswerable)} unanswerable")
        sets.append(data)
    started = time.perf_counter()
    if args.fit:
        fit_coefficients(paths, sets)
        return 0
    path, data = paths[0], sets[0]
    asked, info = play(data)
    result = report(data, asked, info, args.verbose)
    if args.sweep:
        result["sweep"] = sweep(data)
        if not args.no_results and not args.quick:
            plot(result["sweep"], Settings.from_env({}).ltm_min_score,
                 f"Long-term memory as users meet it ({path.name}: {len(data.questions)} questions, "
                 f"{len(data.unanswerable)} unanswerable)", results_name(path))
    print(f"\nplayed in {time.perf_counter() - started:.1f} s")
    if not args.no_results:  # a quick run writes ltm_natural_quick.json (common.quick_run)
        write_results(results_name(path) + ("_sweep" if args.sweep else ""), {"file": path.name, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
