"""What tracing costs a turn when no exporter is configured: the spans a turn opens, on the API's no-op tracer.

``make run`` and ``make test`` configure no OpenTelemetry SDK (``core/telemetry.py``): a turn still opens
its ``assistant.turn`` span and one span per memory step, and records its metrics, all on the API's
non-recording defaults. This times that per turn, in-process, against a turn's own cost (docs/benchmarks.md,
benchmark 3: ~5 ms of CPU with the echo model). With an exporter, see ``server_throughput.py``'s
``(c) ... traces to an OTLP collector`` row.

``--quick``: 2,000 turns instead of 50,000 (a smoke run; its figure is not a measurement).
"""

from __future__ import annotations

import argparse
import time

from common import machine_line, print_table, quick_run, write_results

from core.telemetry import configure_telemetry, memory_span, record_injected, record_request, turn_span

#: the memory steps a turn traces (docs/observability.md)
STEPS = ("load_window", "recall", "store_turn", "longterm_record")


def one_turn() -> None:
    with turn_span("assistant.turn", request_id="r-1", actor_id="alice", session_id="s-1", backend="sqlite"):
        for step in STEPS:
            with memory_span(step, "sqlite", **{"memory.turns": 3}):
                pass
        record_injected(2)
    record_request(200, 0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true", help="2,000 turns (a smoke run)")
    args = parser.parse_args()
    quick = quick_run(args.quick)
    turns = 2_000 if quick else args.turns
    mode = configure_telemetry()
    for _ in range(min(1_000, turns)):  # warm up
        one_turn()
    rounds = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(turns // 5):
            one_turn()
        rounds.append((time.process_time() - started) / (turns // 5) * 1e6)
    best, median = min(rounds), sorted(rounds)[len(rounds) // 2]
    print(machine_line())
    print_table(f"Tracing with no exporter ({mode}): CPU per turn", ["spans per turn", "best us", "median us"],
                [[str(1 + len(STEPS)), f"{best:.1f}", f"{median:.1f}"]])
    write_results("telemetry_overhead", {"mode": mode, "turns": turns, "spans_per_turn": 1 + len(STEPS),
                                         "cpu_us_per_turn_best": round(best, 2),
                                         "cpu_us_per_turn_median": round(median, 2)})


if __name__ == "__main__":
    main()
