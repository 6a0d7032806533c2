"""Benchmark: what long-term memory costs a turn, and the throughput ratio on/off for models of 0, 50 and 500 ms.

usage: .venv/bin/python bench/ltm_cost.py [--turns 200] [--seconds 4] [--rounds 2] [--no-results] [--quick]

The turn is benchmark 3's (``bench/server_throughput.py``, distinct workload): the ``sqlite`` backend,
400 sessions of 20 stored turns with a rolling summary, 25-45-word messages, the echo reply; with
long-term memory on, the actor holds those sessions' 16,400 records (random unit vectors for the user's
messages: a search costs the same whatever they are; none for the replies, as the product stores them)
and every turn searches and then stores its exchange. In-process,
no HTTP: the assistant is ``service.Assistant``, without long-term memory (off) and with it (on: the
``ltm`` that ``agent.build_assistant`` hands it).

1. **CPU per turn**, one thread: process CPU time (every thread: the background writer's embedding
   included, the writer drained before the clock stops) over ``--turns`` turns, off and on.
2. **Measured throughput**, 8 threads calling the assistant back to back for ``--seconds``, in
   ``--rounds`` interleaved rounds, with a model that waits 0, 50 or 500 ms before it echoes (a
   remote model such as Bedrock: time spent waiting, no CPU here): turns/s on / off.
3. **Derived** for a local model whose 50 or 500 ms are CPU on this machine (llama.cpp): with
   every core busy, throughput is cores / CPU per turn, so on/off = (off + model) / (on + model).

The machine's load average is printed with the figures: other work on the 2 cores slows every figure.

``--quick``: a smoke run (16 sessions, 10 turns, windows of 0.2 s), written to ``ltm_cost_quick.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import fmt, machine_line, print_table, quick_run, scratch_dir, write_results
from conversation import echo_reply, user_text

import numpy as np  # noqa: E402

from core.settings import Settings  # noqa: E402
from memory.base import Summary  # noqa: E402
from memory.sqlite import SQLiteStore  # noqa: E402
from scripted_model import WaitingEcho  # noqa: E402

CLIENTS = 8
SESSIONS = 400
STORED_TURNS = 20
ACTOR = "default_user"
DELAYS_MS = (0, 50, 500)
#: unmeasured turns each assistant runs first (imports, connections, the actor's load)
WARMUP_TURNS = 20


def use_quick_sizes() -> None:
    """``--quick``: 16 sessions and 2 warm-up turns (the sizes are read when the run starts)."""
    global SESSIONS, WARMUP_TURNS
    SESSIONS, WARMUP_TURNS = 16, 2


def sessions() -> list[str]:
    return [f"cost-s{n}" for n in range(SESSIONS)]


def prefill(db: Path, long_term: bool) -> None:
    """400 sessions of 20 turns and a summary (as benchmark 3's); with ``long_term`` their 16,400 records."""
    from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

    from longterm.base import MessageRecord
    from longterm.sqlite_store import SQLiteLongTermStore

    store = SQLiteStore(db)
    records: list[MessageRecord] = []
    for index, session_id in enumerate(sessions()):
        messages = []
        for turn in range(1, STORED_TURNS + 1):
            text = user_text(turn)
            messages += [ConversationalMessage(text, MessageRole.USER),
                         ConversationalMessage(echo_reply(text), MessageRole.ASSISTANT)]
            records += [MessageRecord(ACTOR, session_id, turn, 0, "user", text, time.time()),
                        MessageRecord(ACTOR, session_id, turn, 1, "assistant", echo_reply(text), time.time())]
        store.add_turns(ACTOR, session_id, messages)
        store.put_summary(ACTOR, session_id, Summary("The user is planning a trip to Oslo in May.", 10 + index % 5))
    store.close()
    if long_term:
        ltm_store = SQLiteLongTermStore(Settings.from_env({"SESSION_DB": str(db)}).ltm_db)
        rng = np.random.default_rng(3)
        vectors = rng.standard_normal((len(records), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors[1::2] = 0  # the replies: not embedded, as the product stores them (longterm.local.EMBED_REPLIES)
        for start in range(0, len(records), 2000):
            ltm_store.write(records[start:start + 2000], vectors[start:start + 2000])
        ltm_store.close()


def build(db: Path, long_term: bool, delay: float) -> Any:
    import longterm
    from service import Assistant

    settings = replace(Settings.from_env({"SESSION_DB": str(db), "MEMORY_BACKEND": "sqlite"}), model_provider="echo")
    store = SQLiteStore(db)
    if not long_term:
        return Assistant(settings, store, WaitingEcho(delay))
    ltm = longterm.create_long_term(replace(settings, long_term_memory=True), store.name)
    assert ltm is not None
    return Assistant(settings, store, WaitingEcho(delay), ltm=ltm)


def turn(assistant: Any, n: int) -> None:
    from service import ChatRequest

    text = user_text(10_000 + n)
    body = assistant.chat(ChatRequest(message=text, actor_id=ACTOR, session_id=sessions()[n % SESSIONS]))
    assert body["response"] == echo_reply(text)


def drain(assistant: Any) -> None:
    ltm = getattr(assistant, "ltm", None)
    if ltm is not None:
        ltm.flush()


def cpu_per_turn(assistant: Any, turns: int, start: int) -> float:
    """ms of process CPU per turn, the writer's work for these turns included."""
    drain(assistant)
    cpu = time.process_time()
    for n in range(turns):
        turn(assistant, start + n)
    drain(assistant)
    return (time.process_time() - cpu) * 1e3 / turns


def throughput(assistant: Any, seconds: float, start: int) -> float:
    """Turns per second of ``CLIENTS`` threads back to back (each its own sessions)."""
    done = [0] * CLIENTS
    stop = time.perf_counter() + seconds

    def client(index: int) -> None:
        n = start + index
        while time.perf_counter() < stop:
            turn(assistant, n)
            n += CLIENTS  # client i's sessions are i, i + 8, ...: no two clients share a session
            done[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200, help="turns per CPU measurement")
    parser.add_argument("--seconds", type=float, default=4.0, help="window per throughput measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the throughput measurements")
    parser.add_argument("--no-results", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 sessions, 10 turns, 0.2 s windows")
    args = parser.parse_args()
    if quick_run(args.quick):
        parser.set_defaults(turns=10, seconds=0.2, rounds=1)
        args = parser.parse_args()  # flags given still win
        use_quick_sizes()
    load_before = os.getloadavg()
    with scratch_dir("ltm-cost") as directory:
        dbs = {False: directory / "off.db", True: directory / "on.db"}
        for long_term, db in dbs.items():
            prefill(db, long_term)
        assistants = {(lt, d): build(dbs[lt], lt, d / 1e3) for lt in (False, True) for d in DELAYS_MS}
        for (lt, d), assistant in assistants.items():  # first turns pay for imports, connections, the actor's load
            for n in range(WARMUP_TURNS):
                turn(assistant, 900_000 + n)
            drain(assistant)
        cpu = {lt: [] for lt in (False, True)}
        for number in range(3):
            for lt in (False, True):
                cpu[lt].append(cpu_per_turn(assistants[(lt, 0)], args.turns, 100_000 * (number + 1)))
        cpu_ms = {lt: float(np.median(v)) for lt, v in cpu.items()}
        rates: dict[tuple[bool, int], list[float]] = {}
        for number in range(args.rounds):
            for d in DELAYS_MS:
                for lt in (False, True):
                    window = args.seconds * (2 if d >= 500 else 1)
                    rates.setdefault((lt, d), []).append(
                        throughput(assistants[(lt, d)], window, 1_000_000 * (number + 1) + d * 1000))
                    drain(assistants[(lt, d)])
        for assistant in assistants.values():
            assistant.close()
    load_after = os.getloadavg()
    rate = {key: float(np.median(v)) for key, v in rates.items()}
    rows = []
    results: dict[str, Any] = {"cpu_ms_per_turn": {"off": cpu_ms[False], "on": cpu_ms[True]},
                               "cpu_ms_per_turn_runs": {"off": cpu[False], "on": cpu[True]}, "models": {}}
    for d in DELAYS_MS:
        measured = rate[(True, d)] / rate[(False, d)]
        local = (cpu_ms[False] + d) / (cpu_ms[True] + d)
        results["models"][f"{d}ms"] = {"off_turns_per_s": rate[(False, d)], "on_turns_per_s": rate[(True, d)],
                                       "measured_ratio_remote_model": measured,
                                       "derived_ratio_local_model": local}
        rows.append([f"{d} ms", fmt(rate[(False, d)], 1), fmt(rate[(True, d)], 1), f"{measured:.2f}",
                     f"{local:.2f}" if d else "-"])
    print_table(f"CPU per turn, one thread (median of 3 x {args.turns} turns, the writer's work included)",
                ["long-term memory", "CPU ms per turn"],
                [["off", fmt(cpu_ms[False], 2)], ["on", fmt(cpu_ms[True], 2)],
                 ["added", fmt(cpu_ms[True] - cpu_ms[False], 2)]])
    print_table(f"Throughput, {CLIENTS} threads in-process (median of {args.rounds} rounds)",
                ["model time", "off turns/s", "on turns/s", "on/off measured (remote model: waiting)",
                 "on/off derived (local model: CPU)"], rows)
    print(f"\nload average (1, 5, 15 min): before {tuple(round(x, 1) for x in load_before)}, "
          f"after {tuple(round(x, 1) for x in load_after)}")
    results["load_average"] = {"before": load_before, "after": load_after}
    results["machine_line"] = machine_line()
    if not args.no_results:
        write_results("ltm_cost", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
