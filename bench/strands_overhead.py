"""What a 10-turn context costs Strands itself per turn, and whether a supported switch lowers it.

usage: .venv/bin/python bench/strands_overhead.py [--turns 300] [--rounds 5] [--no-results]

The turn is benchmark 3's (b) and (b2) (``bench/server_throughput.py``): a fresh ``Agent`` per turn with
the echo model and ``agent.py``'s system prompt, handed no history or the same 10 turns (20 messages),
run on the calling thread as ours runs it (``models.run_agent``). No tracer is configured (the
OpenTelemetry API's default provider: every span is a ``NonRecordingSpan``), as in ``agent.py``.

Per model call Strands 1.62 still

- deep-copies the whole message list twice: the middleware context (``event_loop/event_loop.py:602``)
  and ``_normalize_messages`` (``event_loop/streaming.py:65``), which copies the context's copy;
- serialises every message to JSON for span events, on the event-loop cycle span
  (``telemetry/tracer.py:682``) and the model span (``tracer.py:445``), through ``_add_event_messages``
  (``tracer.py:1356``) and its ``JSONEncoder``, which ``json.dumps`` every leaf once more to test it
  (``tracer.py:53-81``), although the span records nothing (``_end_span`` checks ``is_recording()``
  at ``tracer.py:298``; the start of a span never does).

Each variant is its own worker process (the tracer reads its environment once, at its first use), all
of them alive at once and driven in interleaved rounds, so other work on the machine weighs on each
alike. Variants: the supported switches (``OTEL_SDK_DISABLED``; the latest GenAI conventions, which
send all messages as one serialised attribute; and as span attributes only) and, measured here only,
never applied in the product, the two upstream changes: no message events on a span that does not
record (``tracer``), and one copy of the messages per model call instead of two (``copy``: the
normalisation works on the middleware context's private copy).

``--quick``: a smoke run (2 of the variants, 1 round of 20 turns), written to ``strands_overhead_quick.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from common import BENCH, fmt, machine_line, print_table, quick_run, write_results
from conversation import echo_reply, user_text

K = 10


@dataclass
class Variant:
    key: str
    label: str
    turns: int = K
    env: dict[str, str] = field(default_factory=dict)
    patches: tuple[str, ...] = ()
    base: str | None = None  # the variant without history but otherwise the same: what the 10 turns add


VARIANTS = [
    Variant("b", "(b) no history", turns=0),
    Variant("b2", "(b2) 10 turns given", base="b"),
    Variant("b2-sdk-disabled", "(b2), OTEL_SDK_DISABLED=true", env={"OTEL_SDK_DISABLED": "true"}),
    Variant("b2-latest", "(b2), OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental",
            env={"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}),
    Variant("b2-attributes", "(b2), ... =gen_ai_latest_experimental,gen_ai_span_attributes_only",
            env={"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental,gen_ai_span_attributes_only"}),
    Variant("b-patched", "(b) + both upstream changes (patched here only)", turns=0, patches=("tracer", "copy")),
    Variant("b2-tracer", "(b2) + no events on a non-recording span (patched here only)", patches=("tracer",)),
    Variant("b2-patched", "(b2) + that and one copy per model call (patched here only)", patches=("tracer", "copy"),
            base="b-patched"),
]
#: a --quick run's variants: plain and patched (the others differ only in their environment or history)
QUICK_VARIANTS = ("b2", "b2-patched")


def history(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for turn in range(1, turns + 1):
        messages += [{"role": "user", "content": [{"text": user_text(turn)}]},
                     {"role": "assistant", "content": [{"text": echo_reply(user_text(turn))}]}]
    return messages


def apply_patches(patches: tuple[str, ...]) -> None:
    """The upstream changes, in this worker process only: what they would save, measured, not shipped."""
    if "tracer" in patches:
        from strands.telemetry.tracer import Tracer

        add_messages, add_system_prompt = Tracer._add_event_messages, Tracer._add_system_prompt_event

        def lean_messages(self: Tracer, span: Any, messages: Any) -> None:
            if span.is_recording():
                add_messages(self, span, messages)

        def lean_system_prompt(self: Tracer, span: Any, *args: Any, **kwargs: Any) -> None:
            if span.is_recording():
                add_system_prompt(self, span, *args, **kwargs)

        Tracer._add_event_messages = lean_messages  # type: ignore[method-assign]
        Tracer._add_system_prompt_event = lean_system_prompt  # type: ignore[method-assign]
    if "copy" in patches:
        import strands.event_loop.streaming as streaming

        # the module's one deep copy is _normalize_messages' (streaming.py:65), of the middleware context's own copy
        streaming.copy = SimpleNamespace(deepcopy=lambda messages: messages)  # type: ignore[attr-defined]


def worker(turns: int, patches: tuple[str, ...]) -> None:
    """Serve ``run N`` lines on stdin: N turns, then one JSON line of CPU and wall ms per turn."""
    from strands import Agent

    from models import EchoModel, run_agent
    from service.assistant import SYSTEM_PROMPT

    apply_patches(patches)
    model, given = EchoModel(), history(turns)

    def turn(n: int) -> None:
        agent = Agent(model=model, system_prompt=SYSTEM_PROMPT, callback_handler=None,
                      messages=copy.deepcopy(given))
        text = user_text(10_000 + n)
        result = run_agent(agent, text)
        assert str(result).strip() == echo_reply(text) and len(agent.messages) == 2 * turns + 2

    for n in range(50):  # lazy imports, first spans
        turn(n)
    done = 50
    for line in sys.stdin:
        count = int(line.split()[1])
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(count):
            turn(done + n)
        done += count
        print(json.dumps({"cpu_ms": (time.process_time() - cpu) * 1e3 / count,
                          "wall_ms": (time.perf_counter() - wall) * 1e3 / count}), flush=True)


def components(reps: int = 2000) -> dict[str, float]:
    """The two costs alone, in this process: µs per call on a turn's 21 messages."""
    from opentelemetry import trace

    from strands.telemetry.tracer import get_tracer

    messages = history(K) + [{"role": "user", "content": [{"text": user_text(10_000)}]}]
    tracer, span = get_tracer(), trace.INVALID_SPAN

    def per_call(func: Any) -> float:
        started = time.process_time()
        for _ in range(reps):
            func()
        return (time.process_time() - started) * 1e6 / reps

    return {"deepcopy_us": per_call(lambda: copy.deepcopy(messages)),
            "span_events_us": per_call(lambda: tracer._add_event_messages(span, messages))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300, help="turns per variant and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over the variants")
    parser.add_argument("--no-results", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("TURNS", "PATCHES"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 20 turns")
    args = parser.parse_args()
    if args.quick:
        parser.set_defaults(turns=20, rounds=1)
        args = parser.parse_args()  # flags given still win
    if args.worker:
        worker(int(args.worker[0]), tuple(p for p in args.worker[1].split(",") if p))
        return 0
    variants = [v for v in VARIANTS if v.key in QUICK_VARIANTS] if quick_run(args.quick) else VARIANTS
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    workers = {v.key: subprocess.Popen([sys.executable, str(BENCH / "strands_overhead.py"), "--worker",
                                        str(v.turns), ",".join(v.patches)], env={**base, **v.env},
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for v in variants}
    runs: dict[str, list[dict[str, float]]] = {v.key: [] for v in variants}
    try:
        for number in range(args.rounds):
            for v in variants:  # one worker at a time: each round is measured on an otherwise idle process set
                process = workers[v.key]
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write(f"run {args.turns}\n")
                process.stdin.flush()
                reply = process.stdout.readline()
                if not reply:
                    raise RuntimeError(f"worker {v.key} exited with {process.wait()}")
                runs[v.key].append(json.loads(reply))
            print(f"  round {number + 1}/{args.rounds}: " + ", ".join(
                f"{key} {r[-1]['cpu_ms']:.2f}" for key, r in runs.items()) + " ms CPU/turn", flush=True)
    finally:
        for process in workers.values():
            if process.stdin is not None:
                process.stdin.close()
            process.wait(30)
    cpu = {key: statistics.median(r["cpu_ms"] for r in rs) for key, rs in runs.items()}
    parts = components()
    rows, out = [], []
    for v in variants:
        context = cpu[v.key] - cpu[v.base] if v.base in cpu else None  # a --quick run has no (b) variants
        entry = {"key": v.key, "label": v.label, "history_turns": v.turns, "env": v.env, "patches": list(v.patches),
                 "cpu_ms_per_turn": round(cpu[v.key], 3),
                 "context_ms": round(context, 3) if context is not None else None,
                 "vs_b2_ms": round(cpu[v.key] - cpu["b2"], 3),
                 "rounds_cpu_ms": [round(r["cpu_ms"], 3) for r in runs[v.key]],
                 "wall_ms_per_turn": round(statistics.median(r["wall_ms"] for r in runs[v.key]), 3)}
        out.append(entry)
        rows.append([v.label, fmt(cpu[v.key], 3), fmt(entry["vs_b2_ms"], 3) if v.turns else "-",
                     fmt(context, 3) if context is not None else "-"])
    print_table(f"Strands CPU per turn, echo model, no tracer (median of {args.rounds} rounds x {args.turns} turns)",
                ["variant", "CPU ms/turn", "vs (b2)", "10-turn context (vs its (b))"], rows)
    print_table("The two costs alone, on a turn's 21 messages (µs per call; per turn: 2 of each)",
                ["cost", "µs per call", "µs per turn"],
                [["copy.deepcopy(messages)", fmt(parts["deepcopy_us"], 1), fmt(2 * parts["deepcopy_us"], 1)],
                 ["Tracer._add_event_messages on a NonRecordingSpan", fmt(parts["span_events_us"], 1),
                  fmt(2 * parts["span_events_us"], 1)]])
    if not args.no_results:
        write_results("strands_overhead", {"machine_line": machine_line(), "turns_per_round": args.turns,
                                           "rounds": args.rounds, "variants": out,
                                           "components_us_per_call": {k: round(x, 1) for k, x in parts.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
