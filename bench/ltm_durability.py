"""Long-term memory's write path under load: how soon a reply's records can be found, and shutdown.

A served app (``python agent.py``: echo model, SQLite, loopback) takes 8 clients of mixed load for a bounded
time: 4 actors; each client loops over turns (70%), searches (25%: ``search_memory`` for its own last turn's
marker word) and forgets (5%: its actor's records). Every turn's message carries a unique marker word (the
echo reply repeats it). A watcher reads the records file (read-only, every 5 ms) and notes when each
exchange's two records are first in the file (keyword-searchable: the FTS row is written in the same
transaction) and when both have their vectors (searchable by meaning). Printed: p50/p99 of the time from
the reply to each, against the goals (≤ 100 ms, ≤ 2 s); how often the client's own ``search_memory`` right
after a reply missed its records (it should never); then SIGTERM: the time to exit and the one line the
server logs about records left without vectors.

    .venv/bin/python bench/ltm_durability.py            # 30 s of load (figures in docs/benchmarks.md)
    .venv/bin/python bench/ltm_durability.py --quick    # a few seconds: does it run
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (LOAD_AT_START, ROOT, SESSION_HEADER, ServerProcess, fmt, machine_line, percentile, print_table,
                    scratch_dir, verdict, write_results)

CLIENTS = 8
ACTORS = 4
KEYWORD_GOAL_MS = 100.0
VECTOR_GOAL_MS = 2000.0
WORDS = ("garden", "bicycle", "cello", "Lisbon", "recipe", "passport", "dentist", "birthday", "train", "novel")


@dataclass
class Exchange:
    marker: str
    actor: str
    replied: float  # monotonic time the reply arrived
    text_seen: float | None = None
    vectors_seen: float | None = None
    forgotten: bool = False


@dataclass
class Tally:
    exchanges: dict[str, Exchange] = field(default_factory=dict)
    turns: int = 0
    #: seconds from sending a turn to its reply
    turn_s: list[float] = field(default_factory=list)
    searches: int = 0
    forgets: int = 0
    errors: int = 0
    #: a search right after the reply that did not find the turn's marker (keyword-searchable at once?)
    immediate_misses: int = 0
    immediate_checks: int = 0
    #: (marker, records the search returned, the actor's records listed by then) of each miss
    missed: list[tuple[str, int]] = field(default_factory=list)
    #: per actor: forgets finished, and forgets running (a check that overlaps one does not count)
    forgotten: dict[str, int] = field(default_factory=dict)
    forgetting: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def forget_state(self, actor: str) -> tuple[int, int]:
        with self.lock:
            return self.forgotten.get(actor, 0), self.forgetting.get(actor, 0)


def post(url: str, body: dict[str, Any], session: str | None = None) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    if session:
        request.add_header(SESSION_HEADER, session)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def client(url: str, index: int, until: float, tally: Tally) -> None:
    rng = random.Random(index)
    actor = f"actor-{index % ACTORS}"
    last_marker: str | None = None
    n = 0
    while time.monotonic() < until:
        roll = rng.random()
        try:
            if roll < 0.70 or last_marker is None:
                before = tally.forget_state(actor)
                n += 1
                marker = f"zq{index}x{n}k"
                words = " ".join(rng.sample(WORDS, 4))
                sent = time.monotonic()
                post(url, {"message": f"note {marker}: today was about {words}", "actor_id": actor},
                     f"{actor}-c{index}-s{n // 10}")
                replied = time.monotonic()
                overlapped = before[1] > 0 or tally.forget_state(actor) != before  # one ran, or is running
                with tally.lock:  # a turn that overlapped a forget of its actor is refused by it: not measured
                    tally.exchanges[marker] = Exchange(marker, actor, replied, forgotten=overlapped)
                    tally.turns += 1
                    tally.turn_s.append(replied - sent)
                last_marker = marker
                if n % 4 == 0:  # right after the reply: is it found by its keyword already?
                    found = post(url, {"action": "search_memory", "query": marker, "actor_id": actor, "top_k": 10})
                    hit = any(marker in m["text"] for m in found["memories"])
                    if not overlapped and tally.forget_state(actor) == before:  # no forget overlapped
                        with tally.lock:
                            tally.immediate_checks += 1
                            tally.immediate_misses += not hit
                            if not hit:
                                tally.missed.append((marker, len(found["memories"])))
            elif roll < 0.95:
                post(url, {"action": "search_memory", "query": f"{last_marker} {rng.choice(WORDS)}",
                           "actor_id": actor, "top_k": 5})
                with tally.lock:
                    tally.searches += 1
            else:
                with tally.lock:
                    tally.forgetting[actor] = tally.forgetting.get(actor, 0) + 1
                try:
                    post(url, {"action": "forget", "actor_id": actor})
                finally:
                    with tally.lock:
                        tally.forgetting[actor] -= 1
                        tally.forgotten[actor] = tally.forgotten.get(actor, 0) + 1
                with tally.lock:
                    tally.forgets += 1
                    for exchange in tally.exchanges.values():
                        if exchange.actor == actor and exchange.vectors_seen is None:
                            exchange.forgotten = True  # deleted before measured: left out
        except (urllib.error.URLError, OSError, ValueError):
            with tally.lock:
                tally.errors += 1


def watch(path: Path, tally: Tally, stop: threading.Event) -> None:
    """Note when each exchange's records reach the file, and when both have vectors (polled every 5 ms).

    Records are followed by actor and per-actor number (``actor_seq``) and known by their public id: SQLite
    reuses the internal id of a deleted newest row, which a forget makes often."""
    while not path.exists() and not stop.is_set():
        time.sleep(0.01)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    last_seq = {f"actor-{a}": 0 for a in range(ACTORS)}
    rows: dict[str, list[str]] = {}  # marker -> its records' public ids
    waiting: set[str] = set()
    text_at: dict[str, float] = {}  # public id -> when the watcher first saw the record in the file
    vector_at: dict[str, float] = {}  # public id -> when the watcher first saw its vector
    try:
        while not stop.is_set():
            now = time.monotonic()
            try:
                for actor, seen in last_seq.items():
                    for seq, token, text, size in db.execute(
                            "SELECT actor_seq, token, text, length(vector) FROM ltm_records WHERE actor_id = ? "
                            "AND actor_seq > ? ORDER BY actor_seq", (actor, seen)):
                        last_seq[actor] = seq
                        marker = next((w.strip("':,.") for w in text.split() if w.startswith(("zq", "'zq"))), None)
                        if marker is None:
                            continue
                        rows.setdefault(marker.lstrip("'"), []).append(token)
                        text_at[token] = now
                        if size:
                            vector_at[token] = now
                        else:
                            waiting.add(token)
                if waiting:
                    tokens = list(waiting)
                    marks = ",".join("?" * len(tokens))
                    embedded = {t for (t,) in db.execute(
                        f"SELECT token FROM ltm_records WHERE token IN ({marks}) AND length(vector) > 0", tokens)}
                    waiting -= embedded
                    vector_at.update((t, now) for t in embedded)
            except sqlite3.OperationalError:  # busy, or the schema not there yet: the next poll
                time.sleep(0.005)
                continue
            with tally.lock:
                for marker, tokens in rows.items():
                    exchange = tally.exchanges.get(marker)
                    if exchange is None or len(tokens) < 2:
                        continue
                    if exchange.text_seen is None:
                        exchange.text_seen = max(text_at[t] for t in tokens)
                    if exchange.vectors_seen is None and all(t in vector_at for t in tokens):
                        exchange.vectors_seen = max(vector_at[t] for t in tokens)
            time.sleep(0.005)
    finally:
        db.close()


def run(seconds: float, drain_s: float) -> dict[str, Any]:
    with scratch_dir("ltm-durability") as directory:
        env = {"MODEL_PROVIDER": "echo", "MEMORY_BACKEND": "sqlite", "SESSION_DB": str(directory / "sessions.db"),
               "LTM_DRAIN_S": f"{drain_s:g}", "HOST": "127.0.0.1"}
        server = ServerProcess("ltm-durability", ROOT / "agent.py", env, directory).start(timeout=120)
        tally = Tally()
        stop = threading.Event()
        watcher = threading.Thread(target=watch, args=(directory / "sessions-longterm.db", tally, stop), daemon=True)
        watcher.start()
        until = time.monotonic() + seconds
        clients = [threading.Thread(target=client, args=(server.url, i, until, tally)) for i in range(CLIENTS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        # the last turns' vectors: wait a little (a backlog left here is what SIGTERM meets)
        settle = time.monotonic() + 2.0
        while time.monotonic() < settle:
            with tally.lock:
                open_ = [e for e in tally.exchanges.values() if e.vectors_seen is None and not e.forgotten]
            if not open_:
                break
            time.sleep(0.05)
        backlog = sqlite3.connect(f"file:{directory / 'sessions-longterm.db'}?mode=ro", uri=True).execute(
            "SELECT count(*) FROM ltm_records WHERE length(vector) = 0").fetchone()[0]
        assert server.process is not None
        signalled = time.monotonic()
        server.process.terminate()
        server.process.wait(60)
        exit_s = time.monotonic() - signalled
        stop.set()
        watcher.join(5)
        log = server.log_tail(10_000_000).splitlines()
        closed = [line for line in log if "long-term memory: closed" in line]
        unrecorded = [line for line in log if "not recorded in long-term memory" in line]
    measured = [e for e in tally.exchanges.values() if not e.forgotten]
    keyword_ms = [max(0.0, (e.text_seen - e.replied) * 1e3) for e in measured if e.text_seen is not None]
    vector_ms = [max(0.0, (e.vectors_seen - e.replied) * 1e3) for e in measured if e.vectors_seen is not None]
    return {
        "seconds": seconds, "clients": CLIENTS, "actors": ACTORS, "turns": tally.turns, "searches": tally.searches,
        "forgets": tally.forgets, "errors": tally.errors,
        "turn_ms": {"p50": percentile([t * 1e3 for t in tally.turn_s], 50),
                    "p99": percentile([t * 1e3 for t in tally.turn_s], 99)}, "measured_exchanges": len(measured),
        "never_vectored": len(measured) - len(vector_ms),
        "never_in_the_file": [e.marker for e in measured if e.text_seen is None],
        "keyword_ms": {"p50": percentile(keyword_ms, 50), "p99": percentile(keyword_ms, 99), "n": len(keyword_ms)},
        "vector_ms": {"p50": percentile(vector_ms, 50), "p99": percentile(vector_ms, 99), "n": len(vector_ms)},
        "immediate_search": {"checks": tally.immediate_checks, "misses": tally.immediate_misses,
                             "missed": tally.missed},
        "backlog_at_sigterm": backlog, "exit_s": round(exit_s, 2), "drain_s": drain_s,
        "unrecorded_turns": unrecorded[:20], "unrecorded_count": len(unrecorded),
        "close_line": closed[-1].split("long-term memory: ", 1)[-1] if closed else None,
        "load_at_start": LOAD_AT_START,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--drain", type=float, default=3.0, help="LTM_DRAIN_S of the served app")
    parser.add_argument("--quick", action="store_true", help="3 s of load (results in ltm_durability_quick.json)")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    print(f"ltm_durability: {CLIENTS} clients, {ACTORS} actors, {seconds:g} s | {machine_line()}", flush=True)
    result = run(seconds, args.drain)
    keyword, vector = result["keyword_ms"], result["vector_ms"]
    print_table("reply -> its records searchable (ms)", ["", "p50", "p99", "n", "goal (p99)", ""], [
        ["by keyword (text in the file)", fmt(keyword["p50"]), fmt(keyword["p99"]), keyword["n"],
         f"<= {KEYWORD_GOAL_MS:g}", verdict(keyword["p99"] <= KEYWORD_GOAL_MS)],
        ["by meaning (both vectors in)", fmt(vector["p50"]), fmt(vector["p99"]), vector["n"],
         f"<= {VECTOR_GOAL_MS:g}", verdict(vector["p99"] <= VECTOR_GOAL_MS)],
    ])
    print(f"load: {result['turns']} turns (reply p50 {fmt(result['turn_ms']['p50'], 1)} ms, p99 "
          f"{fmt(result['turn_ms']['p99'], 1)} ms), {result['searches']} searches, {result['forgets']} forgets, "
          f"{result['errors']} errors; search_memory right after a reply missed it "
          f"{result['immediate_search']['misses']} of {result['immediate_search']['checks']} times; {result['never_vectored']} exchanges without vectors "
          f"when the load ended; never seen in the file: {result['never_in_the_file'] or 'none'}; turns the server "
          f"could not record: {result['unrecorded_count']}")
    print(f"SIGTERM with {result['backlog_at_sigterm']} records without vectors: exit in {result['exit_s']} s "
          f"(LTM_DRAIN_S={result['drain_s']:g}); {result['close_line']}")
    write_results("ltm_durability_quick" if args.quick else "ltm_durability", result)


if __name__ == "__main__":
    main()
