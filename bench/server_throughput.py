"""Benchmark 3: the running server under 8 concurrent clients, with and without memory.

Four servers, each its own ``python`` process serving on a loopback port the way ``agent.py``
does (``BedrockAgentCoreApp.run``, uvicorn), all with the echo model so the model's time is out of the figure:

  (a) bare      ``bench/apps/bare_app.py``: a handler that answers, nothing else
  (b) strands   ``bench/apps/strands_app.py``: a fresh Strands Agent per request, no memory
  (b2)          the same, each agent handed the same 10 turns of history as plain messages (no
                store): what a 10-turn context costs Strands itself, the floor for (c) and (d)
  (c) sqlite    ``agent.py`` (its ``main()``, via ``bench/apps/serve_agent.py``) with ``MEMORY_BACKEND=sqlite`` (the default configuration otherwise)
  (d) redis     ``agent.py`` with ``MEMORY_BACKEND=redis`` (its own ``KEY_PREFIX``, removed after)

and (c), (d) again with ``ROLLING_SUMMARY=off``, and (c) with long-term memory on (``LONG_TERM_MEMORY=on``:
its actor already holding the 400 sessions' 16,000 records; target: >= 0.9 x (c) without it) (the default is on: past ``MEMORY_K`` turns, one turn
in ``SUMMARY_BATCH`` (default 5) folds the next 5 turns into the summary, one more model call).

Load: 8 client threads, each on its own keep-alive HTTP connection, sending back to back for a
warm-up and then a measured window. All servers run at once and are measured in interleaved
rounds (req/s = the median round), so other work on the machine weighs on each alike. Two
workloads per server:

- distinct: each client cycles through its own 50 sessions (400 in all), each already holding
  20 turns and a rolling summary through turn 10 to 14 (spread evenly over the sessions: the
  points of its batch cycle a long conversation passes through), so every request loads a full
  window of 10 turns and (with rolling summary) one request in 5 folds 5 turns, as in a long
  conversation;
- hot: all 8 clients on one such session. Our server serialises the turns of one session (each
  must see the one before it), so there its throughput is one turn at a time by design.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BENCH, SESSION_HEADER, ServerProcess, delete_prefix, fmt, latency_summary, machine_line, percentile,
    print_table, redis_prefix, redis_url, save_plot, scratch_dir, verdict, write_results,
)
from conversation import echo_reply, user_text

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole  # noqa: E402

from core.settings import default_summary_batch  # noqa: E402
from memory.base import SessionStore, Summary  # noqa: E402
from memory.redis_store import RedisStore  # noqa: E402
from memory.sqlite import SQLiteStore  # noqa: E402

AGENT = BENCH / "apps" / "serve_agent.py"  # agent.py's own main(), listening on 127.0.0.1 only
LTM_TARGET_RATIO = 0.9
CLIENTS = 8
SESSIONS_PER_CLIENT = 50
STORED_TURNS = 20
ACTOR = "default_user"  # what the server resolves without an actor header
TARGET_RATIO = 0.85
K = 10  # MEMORY_K's default
SUMMARY_THROUGH = STORED_TURNS - K  # where the summary of a session that just folded ends ...
BATCH = default_summary_batch(K)  # ... and SUMMARY_BATCH's default: sessions' summaries end at 10..14
CLEAN_ENV = ("MEMORY_BACKEND", "MEMORY_ID", "BEDROCK_AGENTCORE_MEMORY_ID", "SESSION_TTL", "MEMORY_K",
             "ROLLING_SUMMARY", "SUMMARY_BATCH", "SESSION_DB", "REDIS_URL", "KEY_PREFIX", "MODEL_PROVIDER",
             "LOG_LEVEL", "LONG_TERM_MEMORY", "LTM_TOP_K", "LTM_MIN_SCORE", "LTM_MAX_TOKENS", "LTM_NAMESPACE")


def distinct_sessions() -> list[list[str]]:
    return [[f"bench-c{c}-s{s}" for s in range(SESSIONS_PER_CLIENT)] for c in range(CLIENTS)]


HOT = "bench-hot"


def prefill(store: SessionStore) -> None:
    """Every benchmark session: 20 stored turns and a rolling summary through turn 10 to 14.

    A long conversation's summary runs up to ``SUMMARY_BATCH`` - 1 turns into its window and
    moves ahead once every ``SUMMARY_BATCH`` turns; the sessions' summaries are spread evenly over
    those points, so that (as over a long conversation) one request in ``SUMMARY_BATCH`` folds.
    """
    sessions = [s for pool in distinct_sessions() for s in pool] + [HOT]
    for index, session_id in enumerate(sessions):
        messages = []
        for turn in range(1, STORED_TURNS + 1):
            text = user_text(turn)
            messages += [ConversationalMessage(text, MessageRole.USER),
                         ConversationalMessage(echo_reply(text), MessageRole.ASSISTANT)]
        store.add_turns(ACTOR, session_id, messages)
        store.put_summary(ACTOR, session_id, Summary("The user is planning a trip to Oslo in May.",
                                                     SUMMARY_THROUGH + index % BATCH))


def prefill_long_term(session_db: str) -> None:
    """The LTM server's actor has long-term records of every prefilled session (2 per turn).

    Written with the store's own write (random unit vectors: a search costs the same whatever they are).
    """
    import numpy as np

    from core.settings import Settings
    from longterm.base import MessageRecord
    from longterm.sqlite_store import SQLiteLongTermStore

    store = SQLiteLongTermStore(Settings.from_env({"SESSION_DB": session_db}).ltm_db)
    rng = np.random.default_rng(3)
    try:
        for session_id in [s for pool in distinct_sessions() for s in pool] + [HOT]:
            records = []
            for turn in range(1, STORED_TURNS + 1):
                text = user_text(turn)
                records += [MessageRecord(ACTOR, session_id, turn, 0, "user", text, time.time()),
                            MessageRecord(ACTOR, session_id, turn, 1, "assistant", echo_reply(text), time.time())]
            vectors = rng.standard_normal((len(records), 384)).astype(np.float32)
            store.write(records, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    finally:
        store.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Load:
    requests: int = 0
    served: int = 0  # every request answered, warm-up included (for CPU per request)
    errors: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)


def run_load(port: int, pools: list[list[str]], warmup_s: float, measure_s: float) -> tuple[Load, float, float]:
    """8 clients back to back; only requests sent and answered inside the measured window count."""
    load = Load()
    lock = threading.Lock()
    barrier = threading.Barrier(len(pools) + 1)
    window: dict[str, float] = {}

    def client(index: int, pool: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = 0
        barrier.wait()
        while True:
            sent = time.perf_counter()
            if sent >= window["end"]:
                break
            session = pool[n % len(pool)]
            text = user_text(10_000 + index * 100_000 + n)
            n += 1
            body = json.dumps({"message": text})
            ok, detail = False, ""
            try:
                conn.request("POST", "/invocations", body=body,
                             headers={"Content-Type": "application/json", SESSION_HEADER: session})
                response = conn.getresponse()
                raw = response.read()
                ok = response.status == 200 and json.loads(raw).get("response") == echo_reply(text)
                detail = f"{response.status} {raw[:200]!r}"
            except (OSError, http.client.HTTPException, ValueError) as e:
                detail = f"{type(e).__name__}: {e}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            done = time.perf_counter()
            with lock:
                load.served += 1
            if sent >= window["start"] and done <= window["end"]:
                with lock:
                    load.requests += 1
                    if ok:
                        load.latencies_ns.append(int((done - sent) * 1e9))
                    else:
                        load.errors += 1
                        if len(load.error_samples) < 3:
                            load.error_samples.append(detail)
        conn.close()

    threads = [threading.Thread(target=client, args=(i, pool)) for i, pool in enumerate(pools)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    window["start"] = now + warmup_s
    window["end"] = window["start"] + measure_s
    barrier.wait()
    for t in threads:
        t.join()
    return load, window["start"], window["end"]


@dataclass
class Config:
    key: str
    label: str
    script: Path
    env: dict[str, str]
    store: str | None = None  # "sqlite" / "redis": pre-filled before the server starts
    rolling_summary: str | None = None
    long_term: bool = False  # its long-term store is pre-filled too


def measure_all(configs: list[Config], log_dir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every server up at once, then ``--rounds`` rounds over all of them (short windows, interleaved),
    so a burst of other work on the machine lands on every server alike; req/s is the median round."""
    servers = []
    try:
        for config in configs:
            servers.append(ServerProcess(config.key, config.script, config.env, log_dir).start())
        for server in servers:  # first requests pay for lazy imports and first connections: not measured
            run_load(server.port, [[HOT]] * CLIENTS, 0.5, 0.01)
        rounds: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for number in range(args.rounds):
            for config, server in zip(configs, servers):
                for workload, pools in (("distinct", distinct_sessions()), ("hot", [[HOT]] * CLIENTS)):
                    cpu_before = server.cpu_seconds()
                    load, start, end = run_load(server.port, pools, args.warmup, args.seconds)
                    rounds.setdefault((config.key, workload), []).append({
                        "requests_per_s": len(load.latencies_ns) / (end - start), "load": load,
                        "server_cpu_s": server.cpu_seconds() - cpu_before})
                    if load.errors:
                        print(f"    {config.key} {workload}: errors {load.error_samples}\n{server.log_tail(1500)}")
            print(f"  round {number + 1}/{args.rounds}: " + ", ".join(
                f"{c.key} {rounds[(c.key, 'distinct')][-1]['requests_per_s']:.0f}" for c in configs) + " req/s",
                flush=True)
        rss = {server.name: rss_mb(server.process.pid) for server in servers if server.process is not None}
    finally:
        for server in servers:
            server.stop()
    # what the long-term writer still had queued when the server stopped (it drains before exiting)
    notes = {server.name: [line for line in server.log_tail(200_000).splitlines() if "long-term memory:" in line]
             for server in servers}
    out = []
    for config, server in zip(configs, servers):
        entry: dict[str, Any] = {"key": config.key, "label": config.label, "startup_s": round(server.startup_s or 0, 3),
                                 "rss_mb": round(rss.get(server.name, float("nan")), 1),
                                 "long_term_log": notes.get(server.name, [])[-3:],
                                 "rolling_summary": config.rolling_summary, "workloads": {}}
        for workload in ("distinct", "hot"):
            runs = rounds[(config.key, workload)]
            latencies = [ns for r in runs for ns in r["load"].latencies_ns]
            served = sum(r["load"].served for r in runs)
            entry["workloads"][workload] = {
                "requests_per_s": round(percentile([r["requests_per_s"] for r in runs], 50), 1),
                "rounds_requests_per_s": [round(r["requests_per_s"], 1) for r in runs],
                "errors": sum(r["load"].errors for r in runs),
                "error_samples": [e for r in runs for e in r["load"].error_samples][:3],
                "server_cpu_ms_per_request": round(1e3 * sum(r["server_cpu_s"] for r in runs) / max(served, 1), 2),
                **(latency_summary(latencies) if latencies else {}),
            }
        out.append(entry)
    return out


def breakdown(turns: int, url: str | None, directory: Path, prefixes: list[str]) -> list[dict[str, Any]]:
    """The same turn in-process on one thread: each layer's p50, so the ratios above can be read."""
    import copy
    from dataclasses import replace

    from strands import Agent

    from service import SYSTEM_PROMPT, Assistant, ChatRequest
    from core.settings import Settings
    from memory.in_memory import InMemoryStore
    from models import EchoModel, run_agent, text_stream
    from models.summarizer import SUMMARY_SYSTEM_PROMPT

    model = EchoModel()
    history: list[Any] = []
    for turn in range(1, K + 1):
        history += [{"role": "user", "content": [{"text": user_text(turn)}]},
                    {"role": "assistant", "content": [{"text": echo_reply(user_text(turn))}]}]
    sessions = [s for pool in distinct_sessions() for s in pool]

    def plain(n: int) -> None:
        Agent(model=model, system_prompt=SYSTEM_PROMPT, callback_handler=None)(user_text(n))

    def plain_same_thread(n: int) -> None:  # as ours runs it: no thread per invocation
        run_agent(Agent(model=model, system_prompt=SYSTEM_PROMPT, callback_handler=None), user_text(n))

    def given(n: int) -> None:
        Agent(model=model, system_prompt=SYSTEM_PROMPT, callback_handler=None,
              messages=copy.deepcopy(history))(user_text(n))

    class ShortSummaries(EchoModel):
        """Echo for the chat, a fixed 60-word summary for the summariser (the echo model "summarises" by
        repeating its whole prompt, up to the 4,000-character clip, streamed word by word)."""

        async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None,
                         **kwargs: Any) -> Any:
            if system_prompt == SUMMARY_SYSTEM_PROMPT:
                for event in text_stream(" ".join(["Ana plans a trip to Oslo in May with a budget."] * 6)):
                    yield event
            else:
                async for event in super().stream(messages, tool_specs, system_prompt, **kwargs):
                    yield event

    def ours(make: Any, rolling: bool, chat_model: Any = model) -> Any:
        def turn(n: int) -> None:
            body = assistant.chat(ChatRequest(message=user_text(n), actor_id=ACTOR, session_id=sessions[n % len(sessions)]))
            assert body["history_length"] == K
        store = make()
        prefill(store)
        assistant = Assistant(replace(Settings.from_env({}), model_provider="echo", rolling_summary=rolling), store,
                              chat_model)
        return turn, store

    layers: list[tuple[str, Any]] = [("(b) Strands agent, no memory", lambda: (plain, None)),
                                     ("(b) run on the calling thread, as ours is (run_agent)",
                                      lambda: (plain_same_thread, None)),
                                     ("(b2) + the same 10 turns given as messages", lambda: (given, None)),
                                     ("ours, in-process store, summary off", lambda: ours(InMemoryStore, False)),
                                     ("ours, sqlite, summary off", lambda: ours(
                                         lambda: SQLiteStore(directory / "breakdown-off.db"), False))]
    if url is not None:
        prefixes.append(redis_prefix())
        layers.append(("ours, redis, summary off", lambda: ours(
            lambda: RedisStore.from_url(url, key_prefix=prefixes[-1]), False)))
    layers.append(("ours, sqlite, summary on (default)", lambda: ours(
        lambda: SQLiteStore(directory / "breakdown-on.db"), True)))
    layers.append(("ours, sqlite, summary on, 60-word summaries", lambda: ours(
        lambda: SQLiteStore(directory / "breakdown-short.db"), True, ShortSummaries())))
    built = [(label, *build()) for label, build in layers]
    samples: dict[str, list[int]] = {label: [] for label, _, _ in built}
    cpu: dict[str, list[int]] = {label: [] for label, _, _ in built}
    for label, func, _ in built:
        for n in range(30):  # warm-up
            func(n)
    rounds = 5  # interleaved, so a burst of other work on the machine weighs on every layer alike
    for number in range(rounds):
        for label, func, _ in built:
            for n in range(turns // rounds):
                started, cpu_started = time.perf_counter_ns(), time.process_time_ns()
                func(1000 + number * turns + n)
                samples[label].append(time.perf_counter_ns() - started)
                cpu[label].append(time.process_time_ns() - cpu_started)
    out = []
    for label, _, store in built:
        if store is not None:
            store.close()
        summary = latency_summary(samples[label])
        # CPU time of this process (all its threads) per turn: what other work on the machine disturbs least
        cpu_ms = round(percentile(cpu[label], 50) / 1e6, 3)
        # the mean too: with the rolling summary one turn in SUMMARY_BATCH folds, which the median never shows
        cpu_mean = round(sum(cpu[label]) / len(cpu[label]) / 1e6, 3)
        out.append({"label": label, "cpu_p50_ms": cpu_ms, "cpu_mean_ms": cpu_mean, "p50_ms": summary["p50_ms"],
                    "p99_ms": summary["p99_ms"]})
        print(f"  in-process {label}: CPU p50 {cpu_ms:.3f} ms, mean {cpu_mean:.3f} ms, wall p50 "
              f"{summary['p50_ms']:.3f} ms", flush=True)
    return out


def plot(data: dict[str, Any], name: str = "server_throughput") -> None:
    import matplotlib.pyplot as plt

    runs = data["servers"]
    short = {"a-bare": "(a) bare", "b-strands": "(b) Strands", "b2-history": "(b2) Strands\n+10 turns",
             "c-sqlite": "(c) sqlite", "d-redis": "(d) redis", "c-sqlite-off": "(c) sqlite\nsummary off",
             "c-sqlite-ltm": "(c) sqlite\n+ long-term",
             "d-redis-off": "(d) redis\nsummary off"}
    labels = [short.get(r["key"], r["key"]) for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
    width = 0.38
    xs = range(len(runs))
    for offset, workload, color in ((-width / 2, "distinct", "tab:blue"), (width / 2, "hot", "tab:orange")):
        values = [r["workloads"][workload]["requests_per_s"] for r in runs]
        bars = left.bar([x + offset for x in xs], values, width, color=color,
                        label=f"{workload} session{'s' if workload == 'distinct' else ''}")
        for bar, value, r in zip(bars, values, runs):
            ratio = r["workloads"][workload].get("ratio_to_b")
            text = f"{value:.0f}" + (f"\n{ratio:.2f}x" if ratio is not None and r["key"][0] in "cd" else "")
            left.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                          va="bottom", fontsize=6)
    left.set_xticks(list(xs), labels, fontsize=7)
    left.set_ylabel("requests / s (8 concurrent clients)")
    left.set_title("Throughput, echo model (ours: req/s and ratio to (b))")
    left.legend(fontsize=8)
    for offset, workload, color in ((-width / 2, "distinct", "tab:blue"), (width / 2, "hot", "tab:orange")):
        p50 = [r["workloads"][workload].get("p50_ms", 0) for r in runs]
        p99 = [r["workloads"][workload].get("p99_ms", 0) for r in runs]
        right.bar([x + offset for x in xs], p99, width, color=color, alpha=0.35,
                  label=f"{workload} p99")
        right.bar([x + offset for x in xs], p50, width, color=color, label=f"{workload} p50")
    right.set_xticks(list(xs), labels, fontsize=7)
    right.set_yscale("log")
    right.set_ylabel("latency ms")
    right.set_title("Latency under load (p50 solid, p99 light)")
    right.legend(fontsize=7)
    fig.suptitle(data["machine_line"], fontsize=8, y=0.01)
    save_plot(fig, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over all servers")
    parser.add_argument("--seconds", type=float, default=0.8, help="measured window per server, workload, round")
    parser.add_argument("--warmup", type=float, default=0.25, help="unmeasured requests before each window")
    parser.add_argument("--breakdown-turns", type=int, default=300)
    parser.add_argument("--servers", default="", help="comma-separated keys to run (b-strands always runs)")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    base["MODEL_PROVIDER"] = "echo"
    print(f"server throughput: {CLIENTS} clients, {args.rounds} rounds of {args.warmup} s warm-up + {args.seconds} s "
          "per server and workload")
    notes: list[str] = []
    with scratch_dir("server") as directory, redis_url() as url:
        configs = [
            Config("a-bare", "(a) bare handler", BENCH / "apps" / "bare_app.py", base),
            Config("b-strands", "(b) Strands agent, no memory", BENCH / "apps" / "strands_app.py", base),
            Config("b2-history", "(b2) Strands agent + 10 turns given", BENCH / "apps" / "strands_app.py",
                   {**base, "BENCH_HISTORY_TURNS": str(K)}),
        ]
        prefixes: list[str] = []
        for rolling in ("on", "off"):
            suffix = "" if rolling == "on" else "-off"
            db = directory / f"sessions{suffix}.db"
            configs.append(Config(f"c-sqlite{suffix}", f"(c) ours sqlite{' summary off' if suffix else ''}",
                                  AGENT, {**base, "MEMORY_BACKEND": "sqlite", "SESSION_DB": str(db),
                                          "LONG_TERM_MEMORY": "off",
                                          **({"ROLLING_SUMMARY": "off"} if suffix else {})},
                                  store="sqlite", rolling_summary=rolling))
            if rolling == "on":
                ltm_db = directory / "sessions-ltm.db"
                configs.append(Config("c-sqlite-ltm", "(c) ours sqlite + long-term memory", AGENT,
                                      {**base, "MEMORY_BACKEND": "sqlite", "SESSION_DB": str(ltm_db),
                                       "LONG_TERM_MEMORY": "on"},
                                      store="sqlite", rolling_summary=rolling, long_term=True))
            if url is not None:
                prefix = redis_prefix()
                prefixes.append(prefix)
                configs.append(Config(f"d-redis{suffix}", f"(d) ours redis{' summary off' if suffix else ''}",
                                      AGENT,
                                      {**base, "MEMORY_BACKEND": "redis", "REDIS_URL": url, "KEY_PREFIX": prefix,
                                       "LONG_TERM_MEMORY": "off", **({"ROLLING_SUMMARY": "off"} if suffix else {})},
                                      store="redis", rolling_summary=rolling))
            elif not notes:
                notes.append("Redis: no server available, (d) skipped")
        if args.servers:
            wanted = set(args.servers.split(",")) | {"b-strands", "b2-history"}
            configs = [c for c in configs if c.key in wanted]
        try:
            for config in configs:
                if config.long_term:
                    prefill_long_term(config.env["SESSION_DB"])
                if config.store == "sqlite":
                    store: SessionStore = SQLiteStore(config.env["SESSION_DB"])
                elif config.store == "redis":
                    store = RedisStore.from_url(config.env["REDIS_URL"], key_prefix=config.env["KEY_PREFIX"])
                if config.store:
                    try:
                        prefill(store)
                    finally:
                        store.close()
            runs = measure_all(configs, directory, args)
            layers = breakdown(args.breakdown_turns, url, directory, prefixes)
        finally:
            for prefix in prefixes:
                delete_prefix(url, prefix)  # type: ignore[arg-type]

    by_key = {r["key"]: r for r in runs}
    strands = by_key["b-strands"]["workloads"]
    given = by_key["b2-history"]["workloads"]
    rows = []
    for r in runs:
        for workload in ("distinct", "hot"):
            w = r["workloads"][workload]
            w["ratio_to_b"] = round(w["requests_per_s"] / strands[workload]["requests_per_s"], 3)
            w["ratio_to_b2"] = round(w["requests_per_s"] / given[workload]["requests_per_s"], 3)
            rows.append([r["label"], workload, fmt(w["requests_per_s"], 1), fmt(w.get("p50_ms"), 1),
                         fmt(w.get("p99_ms"), 1), w["errors"], f"{w['ratio_to_b']:.2f}", f"{w['ratio_to_b2']:.2f}",
                         fmt(w["server_cpu_ms_per_request"], 2)])
    print_table("Server throughput (8 concurrent clients, echo model)",
                ["server", "sessions", "req/s", "p50 ms", "p99 ms", "errors", "vs (b)", "vs (b2)",
                 "server CPU ms/request"], rows)
    print_table("The same turn in-process, one thread, no HTTP (ms per turn)",
                ["layers", "CPU p50", "CPU mean", "mean added to (b)", "wall p50", "wall p99"],
                [[row["label"], fmt(row["cpu_p50_ms"]), fmt(row["cpu_mean_ms"]),
                  fmt(row["cpu_mean_ms"] - layers[0]["cpu_mean_ms"]), fmt(row["p50_ms"]), fmt(row["p99_ms"])]
                 for row in layers])
    checks = []
    for key, name in (("c-sqlite", "(c) sqlite"), ("d-redis", "(d) redis"), ("c-sqlite-off", "(c) sqlite, summary off"),
                      ("d-redis-off", "(d) redis, summary off")):
        if key in by_key:
            ratio = by_key[key]["workloads"]["distinct"]["ratio_to_b"]
            checks.append((f"{name} / (b) >= 0.85 (distinct sessions)", ratio >= TARGET_RATIO, f"{ratio:.2f}"))
    if "c-sqlite-ltm" in by_key and "c-sqlite" in by_key:
        on, off = by_key["c-sqlite-ltm"], by_key["c-sqlite"]
        ratio = on["workloads"]["distinct"]["requests_per_s"] / off["workloads"]["distinct"]["requests_per_s"]
        on["ratio_to_off"] = round(ratio, 3)
        on["rss_added_mb"] = round(on["rss_mb"] - off["rss_mb"], 1)
        checks.append((f"(c) + long-term memory / (c) >= {LTM_TARGET_RATIO} (distinct sessions)",
                       ratio >= LTM_TARGET_RATIO, f"{ratio:.2f}"))
        checks.append(("RSS added by long-term memory <= 150 MB", on["rss_added_mb"] <= 150,
                       f"{on['rss_added_mb']:.0f} MB"))
    print_table("Targets", ["target", "result", "measured"], [[c[0], verdict(c[1]), c[2]] for c in checks])
    data = {
        "machine_line": machine_line(),
        "clients": CLIENTS,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "measured_s_per_round": args.seconds,
        "sessions": {"distinct": f"{CLIENTS} x {SESSIONS_PER_CLIENT} sessions, each with {STORED_TURNS} stored turns "
                                 f"and a summary through turn {SUMMARY_THROUGH} to {SUMMARY_THROUGH + BATCH - 1} "
                                 f"(SUMMARY_BATCH={BATCH})", "hot": "one such session, all clients"},
        "servers": runs,
        "in_process": layers,
        "targets": [{"target": c[0], "met": c[1], "measured": c[2]} for c in checks],
        "notes": notes,
    }
    # a run of some servers only (--servers) never replaces the full run's figures
    name = "server_throughput" if not args.servers else "server_throughput_" + args.servers.replace(",", "_")
    write_results(name, data)
    plot(data, name)


if __name__ == "__main__":
    sys.exit(main())
