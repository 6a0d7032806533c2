"""Load figures: the issue's full shape against the real server, with throughput and latency printed.

    .venv/bin/python -m tests.helpers.load_figures                       # 16 x 50 on one session + 100 sessions x 5
    .venv/bin/python -m tests.helpers.load_figures --backends sqlite --clients 32 --per-client 100

Not a test (nothing here is asserted about time); the correctness checks are the suite's
(``tests/test_load.py``), run here on the bigger shape too: counts exactly 1..N per session and,
for SQLite and Redis, every turn stored once, whole, at the position its count named.
Echo model: the figures are the assistant's own overhead (HTTP, Strands, the store), not a model's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from memory.base import SessionStore
from memory.redis_store import RedisStore
from memory.sqlite import SQLiteStore
from tests.helpers.http_load import Client, Load, LogDrain, in_threads
from tests.helpers.redis_server import answers_ping
from tests.helpers.server import Server


def measure(backend: str, load: Load, directory: Path) -> str:
    env = {"MEMORY_BACKEND": backend, "ROLLING_SUMMARY": "off", "SESSION_DB": str(directory / f"{backend}.db"),
           "SESSION_QUEUE_MAX": str(load.clients)}  # every client on the busy session gets through
    store: SessionStore | None = None
    prefix = f"figures:{uuid.uuid4().hex}:"
    if backend == "sqlite":
        store = SQLiteStore(directory / f"{backend}.db")
    elif backend == "redis":
        env.update(REDIS_URL="redis://127.0.0.1:6379/0", KEY_PREFIX=prefix)
        store = RedisStore.from_url(env["REDIS_URL"], key_prefix=prefix)
    server = Server(env).start()
    LogDrain(server)
    latencies: dict[str, list[float]] = {"one": [], "own": []}

    def caller(kind: str, index: int) -> dict[str, int]:
        client = Client(server.port)

        def post(body: dict, session: str) -> tuple[int, object]:
            started = time.perf_counter()
            answer = client.post(body, session)
            latencies[kind].append((time.perf_counter() - started) * 1e3)
            return answer

        try:
            return load.run(post, kind, index)
        finally:
            client.close()

    try:
        started = time.perf_counter()
        results = in_threads(caller, load.callers())
        wall = time.perf_counter() - started
        load.check(results, store)
    finally:
        server.stop()
        if isinstance(store, RedisStore):
            keys = list(store._redis.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                store._redis.delete(*keys)
        if store is not None:
            store.close()
    return (f"{backend:8} {load.requests:6d} requests in {wall:6.2f} s = {load.requests / wall:7.1f} req/s | "
            f"latency ms, busy session: {percentiles(latencies['one'])} | own sessions: "
            f"{percentiles(latencies['own'])} | counts 1..N, every turn once: ok")


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    cuts = statistics.quantiles(values, n=100)
    return f"p50 {cuts[49]:.0f} p95 {cuts[94]:.0f} p99 {cuts[98]:.0f} max {max(values):.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["memory", "sqlite", "redis"],
                        choices=["memory", "sqlite", "redis"])
    parser.add_argument("--clients", type=int, default=16, help="clients on the one busy session")
    parser.add_argument("--per-client", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=100, help="clients with a session of their own")
    parser.add_argument("--per-session", type=int, default=5)
    args = parser.parse_args()
    load = Load(args.clients, args.per_client, args.sessions, args.per_session)
    print(f"{args.clients} clients x {args.per_client} turns on one session, at the same time as "
          f"{args.sessions} sessions x {args.per_session} turns (echo model, ROLLING_SUMMARY=off)")
    with tempfile.TemporaryDirectory() as directory:
        for backend in args.backends:
            if backend == "redis" and not answers_ping():
                print("redis    skipped: nothing answers on 127.0.0.1:6379")
                continue
            print(measure(backend, load, Path(directory)), flush=True)


if __name__ == "__main__":
    main()
