"""Benchmark 5: a real conversation with the default local model, as a new user would have it.

``agent.py``'s own ``main()`` (through ``bench/apps/serve_agent.py``: 127.0.0.1 only) with the
defaults of a fresh clone (``MODEL_PROVIDER=local``, SmolLM2-135M, SQLite on a fresh database,
rolling summary on), then:

- **conversation**: ``--turns`` (20) user messages of a trip-planning chat in one session, one
  after the other through ``POST /invocations``. Per turn: the seconds to the full reply,
  ``history_length``, whether the reply was cut at ``MAX_TOKENS``, the prompt tokens of the chat
  call and how many of them llama.cpp reused from its cache, the reply's tokens, whether a rolling
  summary fold ended while the turn ran (the server folds after the reply, on a background thread,
  so a fold shares the 2 cores with the next turn when the user answers at once; from the DEBUG
  line ``models.bounded`` logs for every model call: the server runs with ``LOG_LEVEL=DEBUG``), and
  the server process's RSS. ``--pause S`` waits S seconds between a reply and the next message (a
  person reading it); the default, 0, is the worst case for the fold.
- **a second session while the first is mid-reply**: the long session streams another turn; once
  its first words have arrived, a new session sends its first message. The new session's
  time to its full reply, ``--trials`` times (each a new session).
- **RSS** of the server process (VmRSS; the llama.cpp server runs inside it) after start-up,
  after the conversation, and its peak (VmHWM).

Speed depends on what else the machine runs: the 1-minute load average at start and end is
printed and stored with the figures. ``--env NAME=VALUE`` runs with another setting (e.g.
``--env MEMORY_MAX_TOKENS=600``).

``--quick``: a smoke run (2 turns, 1 second session, replies capped at 8 tokens), written to
``<name>_quick.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import (
    BENCH, SESSION_HEADER, ServerProcess, fmt, machine_line, percentile, print_table, quick_run, scratch_dir,
    verdict, write_results,
)

AGENT = BENCH / "apps" / "serve_agent.py"
TARGET_P95_S = 5.0
TARGET_SECOND_SESSION_S = 3.0
CLEAN_ENV = ("MEMORY_BACKEND", "MEMORY_ID", "BEDROCK_AGENTCORE_MEMORY_ID", "SESSION_TTL", "MEMORY_K", "MEMORY_MAX_TOKENS",
             "ROLLING_SUMMARY", "SUMMARY_BATCH", "SESSION_DB", "MODEL_PROVIDER", "LOG_LEVEL", "LOCAL_MODEL_PATH",
             "MAX_TOKENS", "SUMMARY_MAX_TOKENS", "MODEL_TIMEOUT_S", "LOCAL_MODEL_PARALLEL", "LOCAL_MODEL_CONTEXT")
TURNS = [
    "Hi! I'm Ana. I'm planning a trip to Oslo in May with my brother Tom.",
    "We land on May 12 and fly home on May 18. What should we see first?",
    "Tom loves museums, I prefer being outdoors. Any ideas for both of us?",
    "Our budget is about 2,000 euros for the two of us; the flights are already paid.",
    "Is the Oslo Pass worth it?",
    "What's the weather usually like there in May?",
    "We're both vegetarian. Where could we eat?",
    "Can you suggest a day trip from Oslo?",
    "How do we get from the airport to the city centre?",
    "What should I pack?",
    "Tom's birthday is on May 15. Any idea how to celebrate it?",
    "Remind me, when do we land?",
    "Is it easy to get around by public transport?",
    "Which part of the city is good to stay in?",
    "Any tips for saving money?",
    "Which museums should Tom not miss?",
    "Do we need cash, or are cards fine everywhere?",
    "What's my brother's name again?",
    "Could you write a short plan for our first day?",
    "Thanks! Which city are we going to, and what is our budget?",
]
LONG_REPLY = "Please tell me a long story about a dragon who guards the fjords near Oslo."
FIRST_MESSAGE = "Say hi!"


def post(url: str, payload: dict[str, Any], session: str, timeout: float = 600.0) -> tuple[float, int, dict[str, Any]]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", SESSION_HEADER: session})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            body, status = json.loads(r.read()), r.status
    except urllib.error.HTTPError as e:
        body, status = json.loads(e.read() or b"{}"), e.code
    return time.perf_counter() - started, status, body


def rss_mib(pid: int) -> tuple[float, float]:
    """The process's resident set now and at its peak (VmRSS, VmHWM), in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


MODEL_CALL = re.compile(r"model call \| purpose=<(\w+)> \| prompt_tokens=<(\w+)> \| cached_tokens=<(\w+)> \| "
                        r"reply_tokens=<(\w+)> \| stop=<(\w+)> \| ([\d.]+) s")


class ModelCalls:
    """The model calls the server logged since the last look (its DEBUG line per call, models.bounded)."""

    def __init__(self, server: ServerProcess) -> None:
        self.path = server.log_path
        self.offset = self.path.stat().st_size

    def new(self) -> list[dict[str, Any]]:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
            self.offset = log.tell()
        return [{"purpose": m[1], "prompt_tokens": _int(m[2]), "cached_tokens": _int(m[3]),
                 "reply_tokens": _int(m[4]), "stop": m[5], "seconds": float(m[6])} for m in MODEL_CALL.finditer(text)]


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def conversation(server: ServerProcess, turns: int, pause: float = 0.0) -> list[dict[str, Any]]:
    assert server.process is not None
    rows = []
    calls = ModelCalls(server)
    for n, message in enumerate(TURNS[:turns], start=1):
        if n > 1 and pause:
            time.sleep(pause)
        seconds, status, body = post(server.url, {"message": message}, "trip")
        if status != 200:
            raise RuntimeError(f"turn {n}: HTTP {status} {body}\n{server.log_tail()}")
        time.sleep(0.05)  # the log line of the turn's last call is flushed
        made = calls.new()
        chat = next((c for c in made if c["purpose"] == "chat"), {})
        # folds logged since the previous reply: made after a reply, in the background, beside this turn
        folds = [c for c in made if c["purpose"] == "summary"]
        rss, _ = rss_mib(server.process.pid)
        row = {"turn": n, "seconds": round(seconds, 3), "history_length": body["history_length"],
               "truncated": bool(body.get("truncated")), "reply_chars": len(body["response"]),
               "prompt_tokens": chat.get("prompt_tokens"), "prompt_tokens_cached": chat.get("cached_tokens"),
               "reply_tokens": chat.get("reply_tokens"), "chat_s": chat.get("seconds"),
               "folded": bool(folds), "fold_s": round(sum(f["seconds"] for f in folds), 2),
               "rss_mib": round(rss, 1), "load_1m": round(os.getloadavg()[0], 2)}
        rows.append(row)
        print(f"  turn {n:2d}: {seconds:6.2f} s  history {row['history_length']:2d}  prompt {row['prompt_tokens']} "
              f"(cached {row['prompt_tokens_cached']})  reply {row['reply_tokens']}  {'cut ' if row['truncated'] else ''}"
              f"{'+summary %.1f s ' % row['fold_s'] if folds else ''}RSS {rss:.0f} MiB  load {row['load_1m']}",
              flush=True)
    return rows


def stream_until_first_words(url: str, session: str, started: threading.Event, done: threading.Event) -> None:
    """Stream a long reply in ``session``; ``started`` once its first words arrive, ``done`` at its end."""
    request = urllib.request.Request(f"{url}/invocations", method="POST",
                                     data=json.dumps({"message": LONG_REPLY, "stream": True}).encode(),
                                     headers={"Content-Type": "application/json", SESSION_HEADER: session})
    try:
        with urllib.request.urlopen(request, timeout=600) as r:
            for line in r:
                if line.startswith(b"data:") and line[5:].strip().startswith(b'"'):
                    started.set()
    finally:
        started.set()
        done.set()


def second_session(server: ServerProcess, trials: int) -> list[dict[str, Any]]:
    results = []
    for trial in range(trials):
        started, done = threading.Event(), threading.Event()
        streamer = threading.Thread(target=stream_until_first_words, args=(server.url, "trip", started, done))
        streamer.start()
        started.wait(600)
        seconds, status, body = post(server.url, {"message": FIRST_MESSAGE}, f"second-{trial}")
        first_still_writing = not done.is_set()
        streamer.join()
        if status != 200:
            raise RuntimeError(f"second session: HTTP {status} {body}")
        results.append({"seconds": round(seconds, 3), "first_still_writing": first_still_writing})
        print(f"  second session {trial + 1}: first reply in {seconds:.2f} s "
              f"({'while the first session was still writing' if first_still_writing else 'after the first finished'})",
              flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=len(TURNS), choices=range(1, len(TURNS) + 1), metavar="1-20")
    parser.add_argument("--trials", type=int, default=3, help="second-session measurements")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the server")
    parser.add_argument("--name", default="local_conversation", help="results file name (bench/results/<name>.json)")
    parser.add_argument("--pause", type=float, default=0.0, metavar="S",
                        help="seconds between a reply and the next message (default 0: back to back)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 turns, 1 second session, short replies")
    args = parser.parse_args()
    quick = quick_run(args.quick)
    if quick:
        parser.set_defaults(turns=2, trials=1)
        args = parser.parse_args()  # flags given still win
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update(AWS_EC2_METADATA_DISABLED="true", MODEL_PROVIDER="local", MEMORY_BACKEND="sqlite", LOG_LEVEL="DEBUG")
    if quick:
        env.update(MAX_TOKENS="8")  # --env still wins
    env.update(dict(item.split("=", 1) for item in args.env))
    print(f"conversation: {args.turns} turns with the default local model; settings {args.env or 'default'}; "
          f"{args.pause:g} s between a reply and the next message; load average {os.getloadavg()[0]:.2f}")
    data: dict[str, Any] = {"settings": args.env, "pause_s": args.pause}
    with scratch_dir("conversation") as directory:
        server = ServerProcess("local", AGENT, {**env, "SESSION_DB": str(directory / "sessions.db")}, directory)
        server.start(timeout=180)
        try:
            assert server.process is not None
            time.sleep(1.0)  # let start-up settle before reading RSS
            data["rss_after_startup_mib"] = round(rss_mib(server.process.pid)[0], 1)
            data["startup_s"] = round(server.startup_s or 0, 2)
            data["turns"] = conversation(server, args.turns, args.pause)
            data["rss_after_conversation_mib"] = round(rss_mib(server.process.pid)[0], 1)
            data["second_session"] = second_session(server, args.trials) if args.trials else []
            rss, peak = rss_mib(server.process.pid)
            data["rss_at_end_mib"], data["rss_peak_mib"] = round(rss, 1), round(peak, 1)
            settings_line = re.search(r"model_provider=<[^\n]*", server.log_tail(100_000))
            data["model_line"] = settings_line.group(0) if settings_line else ""
        finally:
            server.stop()

    seconds = [t["seconds"] for t in data["turns"]]
    second = [s["seconds"] for s in data["second_session"]]
    timeout_s = float(dict(item.split("=", 1) for item in args.env).get("MODEL_TIMEOUT_S", 60))
    summary = {"p50_s": round(percentile(seconds, 50), 2), "p95_s": round(percentile(seconds, 95), 2),
               "max_s": round(max(seconds), 2), "cut": sum(t["truncated"] for t in data["turns"]),
               "folds": sum(t["folded"] for t in data["turns"]),
               "second_session_median_s": round(percentile(second, 50), 2) if second else None,
               "second_session_max_s": round(max(second), 2) if second else None}
    data["summary"] = summary
    print_table("Per turn", ["turn", "seconds", "history", "prompt tokens (cached)", "reply tokens", "cut",
                             "fold beside it", "RSS MiB"],
                [[t["turn"], fmt(t["seconds"], 2), t["history_length"],
                  f"{t['prompt_tokens']} ({t['prompt_tokens_cached']})", t["reply_tokens"],
                  "yes" if t["truncated"] else "", f"{t['fold_s']:.1f} s" if t["folded"] else "",
                  fmt(t["rss_mib"], 0)] for t in data["turns"]])
    checks = [(f"no turn over MODEL_TIMEOUT_S ({timeout_s:g} s)", summary["max_s"] < timeout_s, f"max {summary['max_s']} s"),
              (f"p95 turn time <= {TARGET_P95_S:g} s", summary["p95_s"] <= TARGET_P95_S,
               f"p50 {summary['p50_s']} s, p95 {summary['p95_s']} s")]
    if second:
        checks.append((f"second session's first reply <= {TARGET_SECOND_SESSION_S:g} s",
                       summary["second_session_max_s"] <= TARGET_SECOND_SESSION_S,
                       f"median {summary['second_session_median_s']} s, max {summary['second_session_max_s']} s"))
    print_table("Targets", ["target", "result", "measured"], [[c[0], verdict(c[1]), c[2]] for c in checks])
    print(f"\nRSS: {data['rss_after_startup_mib']:.0f} MiB after start-up, {data['rss_after_conversation_mib']:.0f} MiB "
          f"after {len(seconds)} turns, peak {data['rss_peak_mib']:.0f} MiB; {summary['cut']} replies cut at "
          f"MAX_TOKENS, {summary['folds']} rolling summary folds ended during a turn (run after a reply, in the background)")
    data["machine_line"] = machine_line()
    data["targets"] = [{"target": c[0], "met": c[1], "measured": c[2]} for c in checks]
    print(data["machine_line"])
    write_results(args.name, data)


if __name__ == "__main__":
    sys.exit(main())
