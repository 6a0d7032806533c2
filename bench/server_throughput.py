"""Benchmark 3: the running server under 8 concurrent clients, with and without memory, and what users deploy instead.

Each server is its own ``python`` process serving on a loopback port the way ``agent.py`` does
(``BedrockAgentCoreApp.run``, uvicorn):

  (a) bare      ``bench/apps/bare_app.py``: a handler that answers, nothing else
  (b) strands   ``bench/apps/strands_app.py``: a fresh Strands Agent per request, no memory
  (b2)          the same, each agent handed the same 10 turns of history as plain messages (no
                store): what a 10-turn context costs Strands itself, the floor for (c) and (d)
  (c) sqlite    ``agent.py`` (its ``main()``, via ``bench/apps/serve_agent.py``) with ``MEMORY_BACKEND=sqlite`` (the default configuration otherwise)
  (d) redis     ``agent.py`` with ``MEMORY_BACKEND=redis`` (its own ``KEY_PREFIX``, removed after)
  (e) files     ``bench/apps/strands_file_app.py``: a Strands Agent with Strands' ``FileSessionManager``
                per request, its documented use (window of 10 turns, as ours): what a user deploys
                instead of ours

and (c), (d) again with ``ROLLING_SUMMARY=off``, and (c) with long-term memory on (``LONG_TERM_MEMORY=on``:
its actor already holding the 400 sessions' 16,000 records; target: >= 0.9 x (c) without it) (the default is on: past ``MEMORY_K`` turns, one turn
in ``SUMMARY_BATCH`` (default 5) folds the next 5 turns into the summary, one more model call).

Load: 8 client threads, each on its own keep-alive HTTP connection, sending back to back for a
warm-up and then a measured window. All servers of a phase run at once and are measured in
interleaved rounds (req/s = the median round), so other work on the machine weighs on each alike.
Workloads:

- distinct: each client cycles through its own 50 sessions (400 in all), each already holding
  20 turns and a rolling summary through turn 10 to 14 (spread evenly over the sessions: the
  points of its batch cycle a long conversation passes through), so every request loads a full
  window of 10 turns and (with rolling summary) one request in 5 folds 5 turns, as in a long
  conversation;
- long: the same with 1,000 stored turns (summary through 990 to 994), 5 sessions per client (40:
  (e) keeps two files per turn); for the servers with a store ((b) and (b2) load nothing, so their
  distinct figure is their long one);
- hot: all 8 clients on one such session. Our server serialises the turns of one session (each
  must see the one before it), so there its throughput is one turn at a time by design. Not for (e):
  its file manager does not serialise a session's requests (concurrent turns would overwrite each
  other's message files).

Three phases: the echo model (every server, every workload), then the echo model waiting 50 ms
and 500 ms per call (``bench/scripted_model.py``; every call, the summary's included) for (b2),
(c) with and without the rolling summary, and (e) at 50 ms, distinct sessions: the latency a user
with a remote model sees. Every answer is checked (the echo reply; for ours and (e), a window of
10 turns).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BENCH, SESSION_HEADER, ServerProcess, delete_prefix, fmt, latency_summary, machine_line, percentile, postgres_url,
    print_table, quick_run, redis_prefix, redis_url, save_plot, scratch_dir, verdict, write_results,
)
from conversation import echo_reply, user_text
from scripted_model import DELAY_ENV

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole  # noqa: E402

from core.settings import default_summary_batch  # noqa: E402
from memory.base import SessionStore, Summary  # noqa: E402
from memory.postgres.store import PostgresStore  # noqa: E402
from memory.redis_store import RedisStore  # noqa: E402
from memory.sqlite import SQLiteStore  # noqa: E402
from tests.helpers.otlp_receiver import OTLPReceiver  # noqa: E402

AGENT = BENCH / "apps" / "serve_agent.py"  # agent.py's own main(), listening on 127.0.0.1 only
STRANDS = BENCH / "apps" / "strands_app.py"
FILES = BENCH / "apps" / "strands_file_app.py"
LTM_TARGET_RATIO = 0.9
CLIENTS = 8
SESSIONS_PER_CLIENT = 50
STORED_TURNS = 20
LONG_SESSIONS_PER_CLIENT = 5
LONG_TURNS = 1000
ACTOR = "default_user"  # what the server resolves without an actor header
TARGET_RATIO = 0.85
B2_TARGET = 0.95  # default configuration / (b2), distinct sessions
FILES_TARGET = 3.0  # default configuration / (e), at 1,000 stored turns
P99_TARGET = 1.1  # p99 with the rolling summary / without, on the 50 ms model
DELAYS_MS = (50, 500)
#: seconds of unmeasured requests a server gets first (lazy imports, first connections)
FIRST_REQUESTS_S = 0.5
#: ``--quick``: a smoke run of every server and phase (the 50 ms model only), seconds long; see ``use_quick_sizes``
#: a --quick run's servers: every app once (the others differ only in their settings: store, summary, delay)
QUICK_SERVERS = ("a-bare", "b-strands", "b2-history", "c-sqlite", "c-sqlite-ltm", "c-sqlite-otlp", "f-postgres",
                 "e-files", "c-sqlite@50ms")
QUICK = {"rounds": 1, "seconds": 0.2, "warmup": 0.05, "model_seconds": 0.3, "models": "50", "breakdown_turns": 10}
K = 10  # MEMORY_K's default
SUMMARY_THROUGH = STORED_TURNS - K  # where the summary of a session that just folded ends ...
BATCH = default_summary_batch(K)  # ... and SUMMARY_BATCH's default: sessions' summaries end at 10..14
#: in-process layers with the model as ``agent.py`` builds it (``configure_model``: the echo model in ``BoundedModel``)
BOUNDED_OFF = "ours, sqlite, summary off, the model as agent.py wraps it (BoundedModel)"
BOUNDED_ON = "ours, sqlite, summary on, the model as agent.py wraps it (BoundedModel): the server's turn"
CLEAN_ENV = ("MEMORY_BACKEND", "MEMORY_ID", "BEDROCK_AGENTCORE_MEMORY_ID", "SESSION_TTL", "MEMORY_K",
             "ROLLING_SUMMARY", "SUMMARY_BATCH", "SESSION_DB", "REDIS_URL", "KEY_PREFIX", "MODEL_PROVIDER",
             "LOG_LEVEL", "LONG_TERM_MEMORY", "LTM_TOP_K", "LTM_MIN_SCORE", "LTM_MAX_TOKENS", "LTM_NAMESPACE",
             DELAY_ENV, "BENCH_HISTORY_TURNS", "BENCH_SESSION_DIR")


def distinct_sessions() -> list[list[str]]:
    return [[f"bench-c{c}-s{s}" for s in range(SESSIONS_PER_CLIENT)] for c in range(CLIENTS)]


def long_sessions() -> list[list[str]]:
    return [[f"bench-long-c{c}-s{s}" for s in range(LONG_SESSIONS_PER_CLIENT)] for c in range(CLIENTS)]


HOT = "bench-hot"
#: each workload's sessions, one pool per client, and how many turns each session holds before the run
WORKLOADS = {"distinct": distinct_sessions, "long": long_sessions, "hot": lambda: [[HOT]] * CLIENTS}
STORED = {"distinct": STORED_TURNS, "long": LONG_TURNS, "hot": STORED_TURNS}


def use_quick_sizes() -> None:
    """``--quick``: 2 sessions per client, 1 long one of 40 turns, shorter first requests (read when the run starts)."""
    global SESSIONS_PER_CLIENT, LONG_SESSIONS_PER_CLIENT, LONG_TURNS, FIRST_REQUESTS_S
    SESSIONS_PER_CLIENT, LONG_SESSIONS_PER_CLIENT, LONG_TURNS, FIRST_REQUESTS_S = 2, 1, 40, 0.1
    STORED["long"] = LONG_TURNS


def sessions_of(workload: str) -> list[str]:
    return list(dict.fromkeys(s for pool in WORKLOADS[workload]() for s in pool))


def prefill(store: SessionStore, workloads: tuple[str, ...] = ("distinct", "hot")) -> None:
    """Every session of ``workloads``: its stored turns, and a rolling summary 0 to 4 turns into its window.

    A long conversation's summary runs up to ``SUMMARY_BATCH`` - 1 turns into its window and
    moves ahead once every ``SUMMARY_BATCH`` turns; the sessions' summaries are spread evenly over
    those points, so that (as over a long conversation) one request in ``SUMMARY_BATCH`` folds.
    """
    for workload in workloads:
        turns = STORED[workload]
        messages = []
        for turn in range(1, turns + 1):
            text = user_text(turn)
            messages += [ConversationalMessage(text, MessageRole.USER),
                         ConversationalMessage(echo_reply(text), MessageRole.ASSISTANT)]
        for index, session_id in enumerate(sessions_of(workload)):
            store.add_turns(ACTOR, session_id, messages)
            store.put_summary(ACTOR, session_id, Summary("The user is planning a trip to Oslo in May.",
                                                         turns - K + index % BATCH))


def prefill_long_term(session_db: str) -> None:
    """The LTM server's actor has long-term records of every prefilled session (2 per turn).

    Written with the store's own write (random unit vectors: a search costs the same whatever they are; the
    replies without one, as the product stores them: ``longterm.local.EMBED_REPLIES``).
    """
    import numpy as np

    from core.settings import Settings
    from longterm.base import MessageRecord
    from longterm.sqlite_store import SQLiteLongTermStore

    store = SQLiteLongTermStore(Settings.from_env({"SESSION_DB": session_db}).ltm_db)
    rng = np.random.default_rng(3)
    try:
        for session_id in sessions_of("distinct") + [HOT]:
            records = []
            for turn in range(1, STORED_TURNS + 1):
                text = user_text(turn)
                records += [MessageRecord(ACTOR, session_id, turn, 0, "user", text, time.time()),
                            MessageRecord(ACTOR, session_id, turn, 1, "assistant", echo_reply(text), time.time())]
            vectors = rng.standard_normal((len(records), 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors[1::2] = 0  # the replies (records alternate: the user's message, then the reply)
            store.write(records, vectors)
    finally:
        store.close()


def seed_files(storage_dir: str, workloads: tuple[str, ...]) -> None:
    """(e)'s sessions: the same turns as ours, written in Strands' own file format (``bench/strands_files.py``)."""
    from models import EchoModel
    from strands_files import seed

    for workload in workloads:
        seed(storage_dir, sessions_of(workload), STORED[workload], EchoModel())


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


def run_load(port: int, pools: list[list[str]], warmup_s: float, measure_s: float,
             history: int | None = None) -> tuple[Load, float, float]:
    """8 clients back to back; only requests sent and answered inside the measured window count.

    An answer counts only if it is the echo reply and, with ``history``, the turn saw that many turns.
    """
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
                answer = json.loads(raw) if response.status == 200 else {}
                ok = answer.get("response") == echo_reply(text) and (
                    history is None or answer.get("history_length") == history)
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
    workloads: tuple[str, ...] = ("distinct", "hot")
    files: bool = False  # (e): its session files are seeded before the server starts
    history: int | None = None  # every answer must report a window of this many turns
    model_delay_ms: int = 0


@dataclass
class Phase:
    """Servers measured together: one model, one window length."""

    model_delay_ms: int
    configs: list[Config]
    warmup_s: float
    seconds: float


def measure_all(phase: Phase, log_dir: Path, rounds_wanted: int) -> list[dict[str, Any]]:
    """Every server of the phase up at once, then ``rounds_wanted`` rounds over all of them (short windows,
    interleaved), so a burst of other work on the machine lands on every server alike; req/s is the median round."""
    configs = phase.configs
    servers = []
    try:
        for config in configs:  # started together: their imports overlap (the start-up time is not a figure here)
            servers.append(ServerProcess(config.key, config.script, config.env, log_dir).launch())
        for server in servers:
            server.wait_ready()
        for server in servers:  # first requests pay for lazy imports and first connections: not measured
            run_load(server.port, [[HOT]] * CLIENTS, FIRST_REQUESTS_S, 0.01)
        rounds: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for number in range(rounds_wanted):
            for config, server in zip(configs, servers):
                for workload in config.workloads:
                    cpu_before = server.cpu_seconds()
                    load, start, end = run_load(server.port, WORKLOADS[workload](), phase.warmup_s, phase.seconds,
                                                config.history)
                    rounds.setdefault((config.key, workload), []).append({
                        "requests_per_s": len(load.latencies_ns) / (end - start), "load": load,
                        "server_cpu_s": server.cpu_seconds() - cpu_before})
                    if load.errors:
                        print(f"    {config.key} {workload}: errors {load.error_samples}\n{server.log_tail(1500)}")
            print(f"  round {number + 1}/{rounds_wanted}: " + ", ".join(
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
        entry: dict[str, Any] = {"key": config.key, "label": config.label, "model_delay_ms": config.model_delay_ms,
                                 "startup_s": round(server.startup_s or 0, 3),
                                 "rss_mb": round(rss.get(server.name, float("nan")), 1),
                                 "long_term_log": notes.get(server.name, [])[-3:],
                                 "rolling_summary": config.rolling_summary, "workloads": {}}
        for workload in config.workloads:
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
    from models import EchoModel, configure_model, run_agent, text_stream
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

    def given_same_thread(n: int) -> None:
        run_agent(Agent(model=model, system_prompt=SYSTEM_PROMPT, callback_handler=None,
                        messages=copy.deepcopy(history)), user_text(n))

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
                                     ("(b2) run on the calling thread", lambda: (given_same_thread, None)),
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
    # the server's model is the echo model inside BoundedModel (MODEL_TIMEOUT_S), which costs CPU per stream event
    bounded = configure_model(replace(Settings.from_env({}), model_provider="echo"))[1]
    layers.append((BOUNDED_OFF, lambda: ours(lambda: SQLiteStore(directory / "breakdown-off-bounded.db"), False,
                                             bounded)))
    layers.append((BOUNDED_ON, lambda: ours(lambda: SQLiteStore(directory / "breakdown-on-bounded.db"), True,
                                            bounded)))
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


def bounds(by_key: dict[str, Any], layers: list[dict[str, Any]]) -> list[tuple[str, float | None]]:
    """Where (c)'s CPU per request goes, against (b): the in-process layers (mean CPU per turn) and the server.

    On two busy cores throughput is CPU per request in reverse, so these add up to why (c)/(b) is what it is.
    """
    mean = {row["label"]: row["cpu_mean_ms"] for row in layers}
    b_thread = mean["(b) run on the calling thread, as ours is (run_agent)"]
    b2_thread = mean["(b2) run on the calling thread"]
    ours_memory = mean["ours, in-process store, summary off"]
    ours_sqlite = mean["ours, sqlite, summary off"]
    ours_on = mean["ours, sqlite, summary on (default)"]
    served = mean[BOUNDED_ON]
    cpu = {key: by_key[key]["workloads"]["distinct"]["server_cpu_ms_per_request"]
           for key in ("b-strands", "c-sqlite") if key in by_key}
    return [
        ("(b) on the server: CPU per request", cpu.get("b-strands")),
        ("(b) in-process, on the calling thread", b_thread),
        ("+ Strands' own cost of the 10-turn context ((b2) - (b), both on the calling thread)", b2_thread - b_thread),
        ("+ our hooks, session tools, per-session lock (ours in-process store, summary off - (b2))",
         ours_memory - b2_thread),
        ("+ the SQLite store (ours sqlite - ours in-process store)", ours_sqlite - ours_memory),
        ("+ the rolling summary: one fold in SUMMARY_BATCH turns, its model call (summary on - off, mean)",
         ours_on - ours_sqlite),
        ("+ BoundedModel (MODEL_TIMEOUT_S) around the echo model, per stream event (the fold's ~1,000 included)",
         served - ours_on),
        ("= (c) in-process, as the server builds it", served),
        ("+ the server: HTTP, the runtime, the request line, GIL hand-offs between 8 busy threads "
         "((c) on the server - in-process)",
         cpu["c-sqlite"] - served if "c-sqlite" in cpu else None),
        ("= (c) on the server: CPU per request", cpu.get("c-sqlite")),
    ]


def short_label(key: str) -> str:
    names = {"a-bare": "(a) bare", "b-strands": "(b) Strands", "b2-history": "(b2) Strands\n+10 turns",
             "c-sqlite": "(c) sqlite", "d-redis": "(d) redis", "c-sqlite-off": "(c) sqlite\nsummary off",
             "c-sqlite-ltm": "(c) sqlite\n+ long-term", "d-redis-off": "(d) redis\nsummary off",
             "e-files": "(e) Strands\n+ files", "f-postgres": "(f) postgres",
             "c-sqlite-otlp": "(c) sqlite\n+ OTLP traces"}
    base = key.partition("@")[0]
    return names.get(base, base)


def plot(data: dict[str, Any], name: str = "server_throughput") -> None:
    import matplotlib.pyplot as plt

    echo = [r for r in data["servers"] if not r["model_delay_ms"]]
    fig = plt.figure(figsize=(14, 13))
    grid = fig.add_gridspec(3, 2, hspace=0.35)
    left, right = fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, :])
    low_left, low_right = fig.add_subplot(grid[2, 0]), fig.add_subplot(grid[2, 1])
    # (a) bare is several times the rest: its bars are cut at the top of the scale, their value written there
    top = 1.3 * max(w["requests_per_s"] for r in echo if r["key"] != "a-bare" for w in r["workloads"].values())
    xs = range(len(echo))
    labels = [short_label(r["key"]) for r in echo]
    width = 0.27
    shown = (("distinct", "tab:blue", "distinct sessions, 20 turns"), ("long", "tab:green", "1,000 stored turns"),
             ("hot", "tab:orange", "hot session"))
    for offset, (workload, color, legend) in zip((-width, 0, width), shown):
        runs = [(x, r) for x, r in zip(xs, echo) if workload in r["workloads"]]
        values = [r["workloads"][workload]["requests_per_s"] for _, r in runs]
        bars = left.bar([x + offset for x, _ in runs], values, width, color=color, label=legend)
        for bar, value, (_, r) in zip(bars, values, runs):
            ratio = r["workloads"][workload].get("ratio_to_b")
            text = f"{value:.0f}" + (f"\n{ratio:.2f}x" if ratio is not None and r["key"][0] in "cd" else "")
            left.annotate(text, (bar.get_x() + bar.get_width() / 2, min(bar.get_height(), top)), ha="center",
                          va="bottom" if bar.get_height() < top else "top", fontsize=7)
    left.set_ylim(0, top)
    left.set_xticks(list(xs), labels, fontsize=8)
    left.set_ylabel("requests / s (8 concurrent clients)")
    left.set_title("Throughput, echo model (ours: req/s and ratio to (b))")
    left.legend(fontsize=7)
    for offset, (workload, color, legend) in zip((-width, 0, width), shown):
        runs = [(x, r["workloads"][workload]) for x, r in zip(xs, echo) if workload in r["workloads"]]
        right.bar([x + offset for x, _ in runs], [w.get("p99_ms", 0) for _, w in runs], width, color=color,
                  alpha=0.35, label=f"{legend} p99")
        right.bar([x + offset for x, _ in runs], [w.get("p50_ms", 0) for _, w in runs], width, color=color,
                  label=f"{legend} p50")
    right.set_xticks(list(xs), labels, fontsize=8)
    right.set_yscale("log")
    right.set_ylabel("latency ms")
    right.set_title("Latency under load, echo model (p50 solid, p99 light)")
    right.legend(fontsize=6)
    for axis, delay in ((low_left, DELAYS_MS[0]), (low_right, DELAYS_MS[1])):
        runs = [r for r in data["servers"] if r["model_delay_ms"] == delay]
        if not runs:
            axis.set_visible(False)
            continue
        px = range(len(runs))
        for offset, (q, color) in zip((-width, 0, width), (("p50", "tab:blue"), ("p95", "tab:purple"),
                                                          ("p99", "tab:red"))):
            values = [r["workloads"]["distinct"].get(f"{q}_ms", 0) for r in runs]
            bars = axis.bar([x + offset for x in px], values, width, color=color, label=q)
            for bar, value in zip(bars, values):
                axis.annotate(f"{value:.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                              va="bottom", fontsize=6)
        axis.set_xticks(list(px), [short_label(r["key"]) + f"\n{r['workloads']['distinct']['requests_per_s']:.0f} req/s"
                                   for r in runs], fontsize=7)
        axis.set_ylabel("turn latency ms")
        axis.set_title(f"A model that takes {delay} ms a call: latency under load, distinct sessions")
        axis.legend(fontsize=7)
    fig.suptitle(data["machine_line"], fontsize=8, y=0.01)
    save_plot(fig, name)


def ratio_of(numerator: float | None, denominator: float | None) -> float:
    """numerator / denominator; NaN (a "-" in the tables, a MISS) when a window served no request (a --quick run)."""
    return numerator / denominator if numerator is not None and denominator else math.nan


def model_key(key: str, delay: int) -> str:
    return f"{key}@{delay}ms" if delay else key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over the servers of each phase")
    parser.add_argument("--seconds", type=float, default=0.8, help="measured window per server, workload, round")
    parser.add_argument("--warmup", type=float, default=0.25, help="unmeasured requests before each window")
    parser.add_argument("--model-seconds", type=float, default=2.0,
                        help="measured window with the 50 ms model (1.5 times that with the 500 ms one)")
    parser.add_argument("--models", default=",".join(map(str, DELAYS_MS)),
                        help="model delays (ms) to measure besides the echo model, e.g. 50; '' for none")
    parser.add_argument("--breakdown-turns", type=int, default=300)
    parser.add_argument("--servers", default="",
                        help="comma-separated keys to run, e.g. c-sqlite,e-files or c-sqlite@50ms (b-strands and "
                             "b2-history of the same model always run)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run that shows every kind of server and phase still runs (1 round of 0.2 s, "
                             "the 50 ms model only, 2 sessions per client, 10 in-process turns; flags given still "
                             "win), "
                             "written to server_throughput_quick.*; its figures are not measurements")
    args = parser.parse_args()
    if quick_run(args.quick):
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
        use_quick_sizes()
    delays = [int(d) for d in args.models.split(",") if d]
    base = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    base["MODEL_PROVIDER"] = "echo"
    print(f"server throughput: {CLIENTS} clients, {args.rounds} rounds of {args.warmup} s warm-up + {args.seconds} s "
          f"per server and workload; then models of {', '.join(f'{d} ms' for d in delays) or 'no other delay'}")
    notes: list[str] = []
    with scratch_dir("server") as directory, redis_url() as url, OTLPReceiver() as collector, \
            postgres_url() as database:
        prefixes: list[str] = []

        def ours_config(key: str, label: str, rolling: str, delay: int = 0, otlp: bool = False,
                        **extra: Any) -> Config:
            db = directory / f"{model_key(key, delay)}.db"
            traces = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url} if otlp else {}
            return Config(model_key(key, delay), label, AGENT,
                          {**base, **traces, "MEMORY_BACKEND": "sqlite", "SESSION_DB": str(db), "LONG_TERM_MEMORY": "off",
                           **({"ROLLING_SUMMARY": "off"} if rolling == "off" else {}),
                           **({DELAY_ENV: str(delay)} if delay else {})},
                          store="sqlite", rolling_summary=rolling, history=K, model_delay_ms=delay, **extra)

        def files_config(delay: int = 0, workloads: tuple[str, ...] = ("distinct", "long")) -> Config:
            storage = directory / f"files{delay or ''}"
            return Config(model_key("e-files", delay), "(e) Strands agent + FileSessionManager per request", FILES,
                          {**base, "BENCH_SESSION_DIR": str(storage), **({DELAY_ENV: str(delay)} if delay else {})},
                          files=True, workloads=workloads, history=K, model_delay_ms=delay)

        def given_config(delay: int = 0) -> Config:
            return Config(model_key("b2-history", delay), "(b2) Strands agent + 10 turns given", STRANDS,
                          {**base, "BENCH_HISTORY_TURNS": str(K), **({DELAY_ENV: str(delay)} if delay else {})},
                          workloads=("distinct", "hot") if not delay else ("distinct",), model_delay_ms=delay)

        every = ("distinct", "long", "hot")
        echo = [
            Config("a-bare", "(a) bare handler", BENCH / "apps" / "bare_app.py", base),
            Config("b-strands", "(b) Strands agent, no memory", STRANDS, base),
            given_config(),
        ]
        for rolling in ("on", "off"):
            suffix = "" if rolling == "on" else "-off"
            echo.append(ours_config(f"c-sqlite{suffix}", f"(c) ours sqlite{' summary off' if suffix else ''}",
                                    rolling, workloads=every))
            if rolling == "on":
                echo.append(Config("c-sqlite-ltm", "(c) ours sqlite + long-term memory", AGENT,
                                   {**base, "MEMORY_BACKEND": "sqlite", "LONG_TERM_MEMORY": "on",
                                    "SESSION_DB": str(directory / "sessions-ltm.db")},
                                   store="sqlite", rolling_summary=rolling, long_term=True, history=K,
                                   workloads=every))  # the default configuration: its 1,000-turn figure is a goal
                # the same server exporting every span (OTLP/HTTP, batched) to a collector on loopback
                echo.append(ours_config("c-sqlite-otlp", "(c) ours sqlite, traces to an OTLP collector", rolling,
                                        workloads=("distinct",), otlp=True))
            if url is not None:
                prefix = redis_prefix()
                prefixes.append(prefix)
                echo.append(Config(f"d-redis{suffix}", f"(d) ours redis{' summary off' if suffix else ''}", AGENT,
                                   {**base, "MEMORY_BACKEND": "redis", "REDIS_URL": url, "KEY_PREFIX": prefix,
                                    "LONG_TERM_MEMORY": "off", **({"ROLLING_SUMMARY": "off"} if suffix else {})},
                                   store="redis", rolling_summary=rolling, workloads=every, history=K))
            elif not notes:
                notes.append("Redis: no server available, (d) skipped")
            if rolling == "on" and database is not None:  # sessions in PostgreSQL (a private pgserver, loopback)
                echo.append(Config("f-postgres", "(f) ours postgres", AGENT,
                                   {**base, "MEMORY_BACKEND": "postgres", "DATABASE_URL": database,
                                    "LTM_BACKEND": "off"},
                                   store="postgres", rolling_summary=rolling, workloads=every, history=K))
            elif rolling == "on":
                notes.append("PostgreSQL: pgserver not available, (f) skipped")
        echo.append(files_config())
        phases = [Phase(0, echo, args.warmup, args.seconds)]
        for delay in delays:
            configs = [given_config(delay),
                       ours_config("c-sqlite", "(c) ours sqlite", "on", delay, workloads=("distinct",)),
                       ours_config("c-sqlite-off", "(c) ours sqlite summary off", "off", delay, workloads=("distinct",))]
            if delay == DELAYS_MS[0]:
                configs.append(files_config(delay, ("distinct",)))
            window = args.model_seconds * (1.5 if delay >= 500 else 1)  # 500 ms: still ~5 turns per client
            phases.append(Phase(delay, configs, max(args.warmup, 2 * delay / 1e3), window))
        if args.quick:
            for phase in phases:
                phase.configs = [c for c in phase.configs if c.key in QUICK_SERVERS]
        if args.servers:
            wanted = set(args.servers.split(","))
            for phase in phases:
                if any(c.key in wanted for c in phase.configs):
                    phase.configs = [c for c in phase.configs
                                     if c.key in wanted or c.key.partition("@")[0] in ("b-strands", "b2-history")]
                else:
                    phase.configs = []
            phases = [p for p in phases if p.configs]
        try:
            for config in [c for p in phases for c in p.configs]:
                if config.long_term:
                    prefill_long_term(config.env["SESSION_DB"])
                if config.store == "sqlite":
                    store: SessionStore = SQLiteStore(config.env["SESSION_DB"])
                elif config.store == "redis":
                    store = RedisStore.from_url(config.env["REDIS_URL"], key_prefix=config.env["KEY_PREFIX"])
                elif config.store == "postgres":
                    store = PostgresStore(config.env["DATABASE_URL"])
                if config.store:
                    try:
                        prefill(store, tuple(dict.fromkeys(config.workloads + ("distinct", "hot"))))
                    finally:
                        store.close()
                if config.files:
                    seed_files(config.env["BENCH_SESSION_DIR"], config.workloads)
            runs = []
            for phase in phases:
                if phase.model_delay_ms:
                    print(f"the echo model waiting {phase.model_delay_ms} ms per call: {args.rounds} rounds of "
                          f"{phase.warmup_s:g} s warm-up + {phase.seconds:g} s per server", flush=True)
                runs += measure_all(phase, directory, args.rounds)
            layers = breakdown(args.breakdown_turns, url, directory, prefixes)
        finally:
            for prefix in prefixes:
                delete_prefix(url, prefix)  # type: ignore[arg-type]

    by_key = {r["key"]: r for r in runs}
    rows = []
    for r in runs:
        delay = r["model_delay_ms"]
        strands = by_key.get("b-strands") if not delay else None
        given_ref = by_key.get(model_key("b2-history", delay))
        for workload, w in r["workloads"].items():
            # (b) and (b2) load nothing: their distinct figure is their figure for any stored size
            for name, reference in (("ratio_to_b", strands), ("ratio_to_b2", given_ref)):
                if reference is not None:
                    ref = reference["workloads"].get(workload) or reference["workloads"]["distinct"]
                    w[name] = round(ratio_of(w["requests_per_s"], ref["requests_per_s"]), 3)
            rows.append([r["label"], f"{delay} ms" if delay else "echo", workload, fmt(w["requests_per_s"], 1),
                         fmt(w.get("p50_ms"), 1), fmt(w.get("p95_ms"), 1), fmt(w.get("p99_ms"), 1), w["errors"],
                         fmt(w.get("ratio_to_b"), 2), fmt(w.get("ratio_to_b2"), 2),
                         fmt(w["server_cpu_ms_per_request"], 2)])
    print_table("Server throughput (8 concurrent clients)",
                ["server", "model", "sessions", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "vs (b)", "vs (b2)",
                 "server CPU ms/request"], rows)
    print_table("The same turn in-process, one thread, no HTTP (ms per turn)",
                ["layers", "CPU p50", "CPU mean", "mean added to (b)", "wall p50", "wall p99"],
                [[row["label"], fmt(row["cpu_p50_ms"]), fmt(row["cpu_mean_ms"]),
                  fmt(row["cpu_mean_ms"] - layers[0]["cpu_mean_ms"]), fmt(row["p50_ms"]), fmt(row["p99_ms"])]
                 for row in layers])
    where = bounds(by_key, layers)
    print_table("What bounds (c)/(b): CPU ms per turn, (b) to (c)", ["", "CPU ms"],
                [[label, fmt(value, 2)] for label, value in where])
    checks = []
    for key, name in (("c-sqlite", "(c) sqlite"), ("d-redis", "(d) redis"), ("c-sqlite-off", "(c) sqlite, summary off"),
                      ("d-redis-off", "(d) redis, summary off")):
        if key in by_key:
            ratio = by_key[key]["workloads"]["distinct"]["ratio_to_b"]
            checks.append((f"{name} / (b) >= 0.85 (distinct sessions)", ratio >= TARGET_RATIO, f"{ratio:.2f}"))
    if "c-sqlite" in by_key:
        ratio = by_key["c-sqlite"]["workloads"]["distinct"]["ratio_to_b2"]
        checks.append((f"(c) sqlite, default configuration / (b2) >= {B2_TARGET} (distinct sessions)",
                       ratio >= B2_TARGET, f"{ratio:.2f}"))
    if "c-sqlite" in by_key and "e-files" in by_key:
        ours_long, files_long = by_key["c-sqlite"]["workloads"]["long"], by_key["e-files"]["workloads"]["long"]
        ratio = ratio_of(ours_long["requests_per_s"], files_long["requests_per_s"])
        ours_long["ratio_to_e"] = round(ratio, 3)
        checks.append((f"(c) sqlite, default configuration / (e) files >= {FILES_TARGET:g} "
                       f"at {LONG_TURNS:,} stored turns",
                       ratio >= FILES_TARGET, f"{ratio:.2f}"))
    on, off = by_key.get(model_key("c-sqlite", DELAYS_MS[0])), by_key.get(model_key("c-sqlite-off", DELAYS_MS[0]))
    if on is not None and off is not None:
        ratio = ratio_of(on["workloads"]["distinct"].get("p99_ms"), off["workloads"]["distinct"].get("p99_ms"))
        checks.append((f"p99 with the rolling summary / without <= {P99_TARGET} ({DELAYS_MS[0]} ms model, "
                       "distinct sessions)", ratio <= P99_TARGET,
                       f"{ratio:.2f} ({fmt(on['workloads']['distinct'].get('p99_ms'), 0)} / "
                       f"{fmt(off['workloads']['distinct'].get('p99_ms'), 0)} ms)"))
    if "c-sqlite-ltm" in by_key and "c-sqlite" in by_key:
        on, off = by_key["c-sqlite-ltm"], by_key["c-sqlite"]
        ratio = ratio_of(on["workloads"]["distinct"]["requests_per_s"], off["workloads"]["distinct"]["requests_per_s"])
        on["ratio_to_off"] = round(ratio, 3)
        on["rss_added_mb"] = round(on["rss_mb"] - off["rss_mb"], 1)
        checks.append((f"(c) + long-term memory / (c) >= {LTM_TARGET_RATIO} (distinct sessions)",
                       ratio >= LTM_TARGET_RATIO, f"{ratio:.2f}"))
        checks.append(("RSS added by long-term memory <= 150 MB", on["rss_added_mb"] <= 150,
                       f"{on['rss_added_mb']:.0f} MB"))
    if "c-sqlite-otlp" in by_key and "c-sqlite" in by_key:  # issue 24: tracing on costs <= 10 % of requests/s
        traced = by_key["c-sqlite-otlp"]["workloads"]["distinct"]["requests_per_s"]
        plain = by_key["c-sqlite"]["workloads"]["distinct"]["requests_per_s"]
        ratio = ratio_of(traced, plain)
        checks.append(("(c) with traces to an OTLP collector / (c) >= 0.90 (distinct sessions)", ratio >= 0.90,
                       f"{ratio:.2f}"))
    print_table("Targets", ["target", "result", "measured"], [[c[0], verdict(c[1]), c[2]] for c in checks])
    if "c-sqlite" in by_key:
        b_cpu, c_cpu = where[0][1], where[-1][1]
        print(f"\n(c) sqlite / (b), distinct sessions: {by_key['c-sqlite']['workloads']['distinct']['ratio_to_b']:.2f} "
              f"(bounded by CPU per request: (b) {fmt(b_cpu, 2)} ms, (c) {fmt(c_cpu, 2)} ms; the table above)")
    data = {
        "machine_line": machine_line(),
        "clients": CLIENTS,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "measured_s_per_round": args.seconds,
        "phases": [{"model_delay_ms": p.model_delay_ms, "warmup_s": p.warmup_s, "measured_s_per_round": p.seconds,
                    "servers": [c.key for c in p.configs]} for p in phases],
        "sessions": {"distinct": f"{CLIENTS} x {SESSIONS_PER_CLIENT} sessions, each with {STORED_TURNS} stored turns "
                                 f"and a summary through turn {SUMMARY_THROUGH} to {SUMMARY_THROUGH + BATCH - 1} "
                                 f"(SUMMARY_BATCH={BATCH})",
                     "long": f"{CLIENTS} x {LONG_SESSIONS_PER_CLIENT} sessions, each with {LONG_TURNS:,} stored turns "
                             f"and a summary through turn {LONG_TURNS - K} to {LONG_TURNS - K + BATCH - 1}",
                     "hot": "one distinct-like session, all clients"},
        "servers": runs,
        "in_process": layers,
        "bounds_cpu_ms": [{"part": label, "cpu_ms": None if value is None else round(value, 3)}
                          for label, value in where],
        "targets": [{"target": c[0], "met": c[1], "measured": c[2]} for c in checks],
        "notes": notes,
    }
    # a quick run, or one of some servers only (--servers), never replaces the full run's figures
    subset = [args.servers.replace(",", "_").replace("@", "-")] if args.servers else []
    name = "_".join(["server_throughput"] + subset)
    write_results(name, data)
    plot(data, name)


if __name__ == "__main__":
    sys.exit(main())
