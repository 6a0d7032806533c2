"""Benchmark 1: the memory cost of one turn, against the length of the session.

One measured operation is what the memory hooks do for every plain turn:
``get_last_k_turns(k=10)`` (the history for the model) and then
``add_turns([user, assistant])`` (the new exchange), on a session that already
holds 10 ... 100,000 turns. The real store calls, nothing else, timed together.

- memory, sqlite, redis: p50 / p99 wall time over ``--iterations`` operations per size.
- dynamodb: the same on DynamoDB Local (the real engine, a Java process on loopback; NOT the AWS
  service, whose figures are network round trips), with its service calls per turn counted too.
- agentcore: the store on its real boto3 client, answered instantly by the Stubber-backed fake
  service of the tests (``tests/helpers/agentcore_fake.py``): the figure is service calls per turn, not time.

Pre-fill is fast and outside the timing: big ``add_turns`` calls (one event per chunk) for
memory / sqlite / redis, 90 turns per call for dynamodb (one transaction holds at most 99 items); for agentcore, events written straight into the fake service, one per turn,
exactly as the store writes them (user + assistant, with the ``user_messages`` count metadata).

Each size gets enough sessions that no session grows by more than 10 % during the run; the
operations go round-robin over them.

``--quick``: a smoke run (10 and 100 turns, 20 operations), written to ``store_overhead_quick.*``.
"""

from __future__ import annotations

import argparse
import collections
import gc
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from common import (
    delete_prefix, fmt, latency_summary, machine_line, print_table, redis_prefix, redis_url, save_plot,
    quick_run, scratch_dir, verdict, write_results,
)
from conversation import assistant_text, user_text

import boto3  # noqa: E402
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole  # noqa: E402

from memory.agentcore import COUNT_KEY, AgentCoreStore  # noqa: E402
from memory.base import SessionStore  # noqa: E402
from memory.dynamodb import DynamoDBStore, create_table  # noqa: E402
from memory.in_memory import InMemoryStore  # noqa: E402
from memory.redis_store import RedisStore  # noqa: E402
from memory.sqlite import SQLiteStore  # noqa: E402
from tests.helpers.agentcore_fake import MEMORY_ID, FakeMemoryService  # noqa: E402
from tests.helpers.dynamodb_local import DynamoDBLocal, MissingTool  # noqa: E402

SIZES = (10, 100, 1_000, 10_000, 100_000)
K = 10
ACTOR = "bench-actor"
CHUNK_TURNS = 2_000  # turns per pre-fill add_turns call
DYNAMODB_CHUNK_TURNS = 90  # a DynamoDB transaction holds at most 99 items (one per turn, and the head)
TARGET_SQLITE_P50_MS = 0.5
TARGET_SQLITE_FLATNESS = 1.2
TARGET_REDIS_P50_MS = 1.0
TARGET_AGENTCORE_CALLS = 2
TARGET_DYNAMODB_CALLS = 2


def exchange(turn: int) -> list[ConversationalMessage]:
    return [ConversationalMessage(user_text(turn), MessageRole.USER),
            ConversationalMessage(assistant_text(turn), MessageRole.ASSISTANT)]


# A handful of distinct exchanges, reused: pre-filling 100,000 turns must not spend its time making text.
EXCHANGES = [exchange(t) for t in range(64)]


def sessions_for(size: int, operations: int) -> int:
    """Enough sessions that ``operations`` round-robin writes grow none of them by more than 10 %."""
    return max(1, min(operations, math.ceil(operations * 10 / size)))


def prefill(store: SessionStore, session_id: str, turns: int, chunk: int = CHUNK_TURNS) -> None:
    done = 0
    while done < turns:
        n = min(chunk, turns - done)
        messages = [m for t in range(done, done + n) for m in EXCHANGES[t % len(EXCHANGES)]]
        store.add_turns(ACTOR, session_id, messages)
        done += n


@dataclass
class SizeResult:
    size: int
    sessions: int
    prefill_s: float
    latency: dict[str, float] = field(default_factory=dict)
    calls: dict[str, Any] = field(default_factory=dict)


class CallCounter:
    """Counts the service calls a boto3 client sends (botocore's ``before-call`` event)."""

    def __init__(self, client: Any) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        client.meta.events.register("before-call.*.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def total(self) -> int:
        return sum(self.calls.values())


def measure_timed(store: SessionStore, name: str, size: int, iterations: int, warmup: int,
                  chunk: int = CHUNK_TURNS, counter: CallCounter | None = None) -> SizeResult:
    operations = iterations + warmup
    count = sessions_for(size, operations)
    sessions = [f"{name}-{size}-{i}" for i in range(count)]
    started = time.perf_counter()
    for session_id in sessions:
        prefill(store, session_id, size, chunk)
    prefill_s = time.perf_counter() - started
    gc.collect()
    samples: list[int] = []
    per_turn: list[int] = []
    operations_seen: collections.Counter[str] = collections.Counter()
    new = EXCHANGES[7]
    for i in range(operations):
        before = counter.calls.copy() if counter is not None else None
        session_id = sessions[i % count]
        t0 = time.perf_counter_ns()
        turns = store.get_last_k_turns(ACTOR, session_id, K)
        store.add_turns(ACTOR, session_id, new)
        elapsed = time.perf_counter_ns() - t0
        if len(turns) != K:  # measure real work only
            raise AssertionError(f"{name}: {len(turns)} turns loaded from a session of {size}+ turns")
        if i >= warmup:
            samples.append(elapsed)
            if counter is not None and before is not None:
                made = counter.calls - before
                per_turn.append(sum(made.values()))
                operations_seen.update(made)
    calls = {}
    if per_turn:
        calls = {"per_turn_max": max(per_turn), "per_turn_mean": round(sum(per_turn) / len(per_turn), 3),
                 "by_operation_per_turn": {op: round(n / len(per_turn), 3) for op, n in sorted(operations_seen.items())}}
    return SizeResult(size, count, round(prefill_s, 3), latency_summary(samples), calls)


# -- AgentCore: events straight into the fake, then count the store's calls ----------------------

def agentcore_prefill(service: FakeMemoryService, session_id: str, turns: int) -> None:
    """One event per turn, as ``AgentCoreStore.add_turns`` writes it, older than now and in order."""
    events = service.events[(MEMORY_ID, ACTOR, session_id)]
    start = datetime.now(timezone.utc) - timedelta(seconds=turns + 60)
    for t in range(turns):
        user, assistant = EXCHANGES[t % len(EXCHANGES)]
        stamp = start + timedelta(seconds=t)
        seq = next(service._seq)
        events.append({
            "memoryId": MEMORY_ID, "actorId": ACTOR, "sessionId": session_id,
            "eventId": f"{int(stamp.timestamp() * 1000)}#{seq:08x}", "eventTimestamp": stamp,
            "payload": [{"conversational": {"content": {"text": user.text}, "role": "USER"}},
                        {"conversational": {"content": {"text": assistant.text}, "role": "ASSISTANT"}}],
            "metadata": {COUNT_KEY: {"stringValue": str(t + 1)}},
            "_seq": seq,
        })


def measure_agentcore(size: int, iterations: int) -> SizeResult:
    service = FakeMemoryService()
    store = AgentCoreStore(MEMORY_ID, region_name="us-west-2", boto3_session=boto3.Session(region_name="us-west-2"))
    service.attach(store.manager._data_plane_client)
    count = sessions_for(size, iterations)
    sessions = [f"agentcore-{size}-{i}" for i in range(count)]
    started = time.perf_counter()
    for session_id in sessions:
        agentcore_prefill(service, session_id, size)
    prefill_s = time.perf_counter() - started
    per_turn: list[int] = []
    events_read: list[int] = []
    operations: collections.Counter[str] = collections.Counter()
    expected: dict[str, int] = {s: size for s in sessions}
    for i in range(iterations):
        session_id = sessions[i % count]
        before = len(service.calls)
        turns = store.get_last_k_turns(ACTOR, session_id, K)
        stored = store.add_turns(ACTOR, session_id, EXCHANGES[7])
        calls = service.calls[before:]
        expected[session_id] += 1
        if len(turns) != K or stored != expected[session_id]:
            raise AssertionError(f"agentcore: {len(turns)} turns, count {stored} != {expected[session_id]}")
        per_turn.append(len(calls))
        operations.update(name for name, _ in calls)
        events_read.append(sum(min(p.get("maxResults", 20), 100) for name, p in calls if name == "ListEvents"))
    store.close()
    return SizeResult(size, count, round(prefill_s, 3), calls={
        "per_turn_max": max(per_turn),
        "per_turn_mean": round(sum(per_turn) / len(per_turn), 3),
        "by_operation_per_turn": {op: round(n / iterations, 3) for op, n in sorted(operations.items())},
        "events_requested_per_turn_max": max(events_read),
        "turns": iterations,
    })


# -- the run -------------------------------------------------------------------------------------

def run_backend(name: str, make: Callable[[], SessionStore], sizes: tuple[int, ...], iterations: int,
                warmup: int, chunk: int = CHUNK_TURNS) -> list[SizeResult]:
    results = []
    store = make()
    counter = CallCounter(store.client) if isinstance(store, DynamoDBStore) else None
    try:
        for size in sizes:
            result = measure_timed(store, name, size, iterations, warmup, chunk, counter)
            print(f"  {name:<7} {size:>7} turns: p50 {fmt(result.latency['p50_ms'])} ms, "
                  f"p99 {fmt(result.latency['p99_ms'])} ms ({result.sessions} sessions, pre-fill "
                  f"{result.prefill_s:.1f} s){' calls ' + str(result.calls['by_operation_per_turn']) if result.calls else ''}",
                  flush=True)
            results.append(result)
    finally:
        store.close()
    return results


def plot(data: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [2.2, 1]})
    styles = {"memory": "tab:gray", "sqlite": "tab:blue", "redis": "tab:red", "dynamodb": "tab:green"}
    for name, color in styles.items():
        rows = data["backends"].get(name)
        if not rows:
            continue
        sizes = [r["size"] for r in rows]
        left.plot(sizes, [r["latency"]["p50_ms"] for r in rows], "o-", color=color, label=f"{name} p50")
        left.plot(sizes, [r["latency"]["p99_ms"] for r in rows], "s--", color=color, alpha=0.55,
                  label=f"{name} p99")
    left.axhline(TARGET_SQLITE_P50_MS, color="tab:blue", lw=0.8, ls=":", label="SQLite p50 target")
    left.axhline(TARGET_REDIS_P50_MS, color="tab:red", lw=0.8, ls=":", label="Redis p50 target")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("turns already stored in the session")
    left.set_ylabel("ms per turn: get_last_k_turns(10) + add_turns")
    left.set_title("Memory cost of one turn vs session length")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    rows = data["backends"].get("agentcore") or []
    if rows:
        sizes = [str(r["size"]) for r in rows]
        right.bar(sizes, [r["calls"]["per_turn_max"] for r in rows], color="tab:orange")
        right.axhline(TARGET_AGENTCORE_CALLS, color="black", lw=0.8, ls=":", label="target")
        right.set_ylim(0, 4)
        right.set_xlabel("turns already stored")
        right.set_ylabel("service calls per turn (max)")
        right.set_title("AgentCore Memory (Stubber fake)")
        right.legend(fontsize=8)
    fig.suptitle(data["machine_line"], fontsize=8, y=-0.12)
    save_plot(fig, "store_overhead")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1000, help="timed operations per backend and size")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--agentcore-iterations", type=int, default=20)
    parser.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")), default=SIZES)
    parser.add_argument("--skip-dynamodb", action="store_true", help="no DynamoDB Local row (it needs Java)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 and 100 turns, 20 operations")
    args = parser.parse_args()
    if quick_run(args.quick):
        parser.set_defaults(iterations=20, warmup=5, agentcore_iterations=3, sizes=(10, 100))
        args = parser.parse_args()  # flags given still win

    print(f"store overhead: {args.iterations} timed operations per backend and size, k={K}")
    backends: dict[str, list[SizeResult]] = {}
    notes: list[str] = []
    with scratch_dir("store") as directory:
        backends["memory"] = run_backend("memory", InMemoryStore, args.sizes, args.iterations, args.warmup)
        backends["sqlite"] = run_backend("sqlite", lambda: SQLiteStore(directory / "sessions.db"), args.sizes,
                                         args.iterations, args.warmup)
    with redis_url() as url:
        if url is None:
            notes.append("Redis: no server available, skipped")
        else:
            prefix = redis_prefix()
            try:
                backends["redis"] = run_backend("redis", lambda: RedisStore.from_url(url, key_prefix=prefix),
                                                args.sizes, args.iterations, args.warmup)
            finally:
                removed = delete_prefix(url, prefix)
                print(f"  redis: removed {removed} keys under {prefix}")
    if not args.skip_dynamodb:
        try:
            engine = DynamoDBLocal().start()
        except MissingTool as e:
            notes.append(f"DynamoDB Local: {e}; skipped")
            print(f"note: DynamoDB Local not available ({e}): DynamoDB figures skipped")
        else:
            try:
                client = engine.client()
                create_table(client, "bench-sessions")
                backends["dynamodb"] = run_backend(
                    "dynamodb", lambda: DynamoDBStore(client, "bench-sessions"), args.sizes, args.iterations,
                    args.warmup, DYNAMODB_CHUNK_TURNS)
            finally:
                engine.stop()
    backends["agentcore"] = []
    for size in args.sizes:
        result = measure_agentcore(size, args.agentcore_iterations)
        print(f"  agentcore {size:>7} turns: {result.calls['per_turn_max']} calls per turn "
              f"{result.calls['by_operation_per_turn']}", flush=True)
        backends["agentcore"].append(result)

    rows = []
    for name in ("memory", "sqlite", "redis", "dynamodb"):
        for r in backends.get(name, []):
            rows.append([name, f"{r.size:,}", fmt(r.latency["p50_ms"]), fmt(r.latency["p99_ms"]),
                         fmt(r.latency["mean_ms"]), r.sessions])
    print_table("Per-turn memory cost (get_last_k_turns(k=10) + add_turns(user, assistant))",
                ["backend", "stored turns", "p50 ms", "p99 ms", "mean ms", "sessions"], rows)
    print_table("AgentCore Memory: service calls per plain turn (Stubber fake, answers instantly)",
                ["stored turns", "calls/turn (max)", "by operation", "events requested (max)"],
                [[f"{r.size:,}", r.calls["per_turn_max"], r.calls["by_operation_per_turn"],
                  r.calls["events_requested_per_turn_max"]] for r in backends["agentcore"]])

    checks = []
    sqlite = backends["sqlite"]
    if sqlite:
        worst = max(r.latency["p50_ms"] for r in sqlite)
        checks.append(("SQLite p50 <= 0.5 ms at every size", worst <= TARGET_SQLITE_P50_MS, f"worst {worst:.3f} ms"))
        by_size = {r.size: r.latency["p50_ms"] for r in sqlite}
        if 10 in by_size and 100_000 in by_size:
            ratio = by_size[100_000] / by_size[10]
            checks.append(("SQLite p50 at 100,000 turns <= 1.2x at 10", ratio <= TARGET_SQLITE_FLATNESS,
                           f"{ratio:.2f}x"))
    if backends.get("redis"):
        worst = max(r.latency["p50_ms"] for r in backends["redis"])
        checks.append(("Redis p50 <= 1 ms at every size", worst <= TARGET_REDIS_P50_MS, f"worst {worst:.3f} ms"))
    if backends.get("dynamodb"):
        print_table("DynamoDB (Local): service calls per plain turn",
                    ["stored turns", "calls/turn (max)", "by operation"],
                    [[f"{r.size:,}", r.calls["per_turn_max"], r.calls["by_operation_per_turn"]]
                     for r in backends["dynamodb"]])
        worst = max(r.calls["per_turn_max"] for r in backends["dynamodb"])
        checks.append(("DynamoDB <= 2 service calls per plain turn", worst <= TARGET_DYNAMODB_CALLS, f"max {worst}"))
    worst_calls = max(r.calls["per_turn_max"] for r in backends["agentcore"])
    checks.append(("AgentCore <= 2 service calls per plain turn", worst_calls <= TARGET_AGENTCORE_CALLS,
                   f"max {worst_calls}"))
    print_table("Targets", ["target", "result", "measured"], [[c[0], verdict(c[1]), c[2]] for c in checks])

    data = {
        "machine_line": machine_line(),
        "k": K,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "operation": "get_last_k_turns(actor, session, k=10) + add_turns(actor, session, [user, assistant])",
        "backends": {name: [vars(r) for r in rs] for name, rs in backends.items()},
        "targets": [{"target": c[0], "met": c[1], "measured": c[2]} for c in checks],
        "notes": notes,
    }
    write_results("store_overhead", data)
    plot(data)


if __name__ == "__main__":
    sys.exit(main())
