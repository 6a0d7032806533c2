"""Benchmark 2: the same conversation through our memory and through the alternatives.

Every contestant replays the same conversation (``bench/conversation.py``) through a real agent
loop with an echo model, one fresh agent per turn (a stateless server), and the figure is the
time spent inside the memory layer per turn once 1,000 turns are stored (turns 1,001 ... 1,000+N):
persisting the turn and loading the context for the next one. The whole turn (agent + echo model
+ memory) is reported beside it.

- ours (SQLite): ``Agent(hooks=[MemoryHooks(store, actor, session, k=10)])`` without rolling
  summary. Memory time = ``load_history`` (``get_last_k_turns(k=10)``, 10 turns as 20 messages) +
  ``save_turn`` (``add_turns(user, assistant)``: one transaction). ``SQLITE_SYNCHRONOUS=NORMAL``
  (the default) and ``FULL`` (fsync per turn, the durability of the OpenAI SDK's SQLite session).
- Strands ``FileSessionManager``: ``Agent(session_manager=FileSessionManager(session_id, dir),
  conversation_manager=SlidingWindowConversationManager(window_size=20))``, so it also hands the
  model 10 turns. Memory time = the manager's constructor (reads ``session.json``), ``initialize``
  (reads ``agent.json``, lists the messages directory, reads the window's message files), and per
  message ``append_message`` (one JSON file) + ``sync_agent`` (rewrites ``agent.json`` when the agent
  state changed), plus the final ``sync_agent``. Files are written atomically, not fsynced: the
  durability of our ``NORMAL``.
- OpenAI Agents SDK ``SQLiteSession`` (``bench/openai_session.py``, its own venv): ``Runner.run``
  with the session; memory time = ``get_items`` + 2 x ``add_items``. Default settings (the runner
  loads every stored item) and ``SessionSettings(limit=20)`` (10 turns, like ours).
- AgentCore Memory, on the Stubber-backed fake service (answers instantly): service calls per
  turn for ours (``AgentCoreStore``) and for the official Strands integration
  (``AgentCoreMemorySessionManager``, one per request, as its config binds one session).

Pre-fill: ours and the Strands file manager replay all 1,000 turns for real (the plot shows their
per-turn memory time across the whole replay). The OpenAI session is pre-filled with ``add_items``
(the same items its runner stores). AgentCore: ours gets one event per turn written straight into
the fake (exactly what the store writes); the official manager replays its first turns for real
and the rest of its events are copies of what it wrote for its last real turn, with the texts and
its conversation-manager offset advanced, so the session holds what 1,000 real turns would leave.

``--quick``: a smoke run (20 stored turns, 5 measured), written to ``alternatives_quick.*``; without
the OpenAI Agents SDK's venv (``OPENAI_AGENTS_PYTHON``) its rows are left out, and the run says so.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import (
    ROOT, fmt, latency_summary, machine_line, percentile, print_table, quick_run, save_plot, scratch_dir, verdict,
    write_results,
)
from conversation import echo_reply, user_text

import boto3  # noqa: E402
from strands import Agent  # noqa: E402
from strands.agent.conversation_manager import SlidingWindowConversationManager  # noqa: E402
from strands.session.file_session_manager import FileSessionManager  # noqa: E402

from service.assistant import SYSTEM_PROMPT  # noqa: E402
from hooks.memory import MemoryHooks  # noqa: E402
from memory.turn import TurnState  # noqa: E402
from memory.agentcore import COUNT_KEY, AgentCoreStore  # noqa: E402
from memory.base import SessionStore  # noqa: E402
from memory.sqlite import SQLiteStore  # noqa: E402
from models import EchoModel  # noqa: E402
from tests.helpers.agentcore_fake import MEMORY_ID, FakeMemoryService  # noqa: E402

K = 10
ACTOR = "bench-actor"
TARGET_FILE_RATIO = 10.0
OPENAI_PYTHON = os.environ.get("OPENAI_AGENTS_PYTHON", "/tmp/agentcore-bench-openai-venv/bin/python")


class Meter:
    def __init__(self) -> None:
        self.ns = 0

    def add(self, started: int) -> None:
        self.ns += time.perf_counter_ns() - started


METER = Meter()


class TimedHooks(MemoryHooks):
    """Our memory hooks, timed: everything they do for a turn."""

    def load_window(self, event: Any) -> None:
        started = time.perf_counter_ns()
        try:
            super().load_window(event)
        finally:
            METER.add(started)

    def store_turn(self, event: Any) -> None:
        started = time.perf_counter_ns()
        try:
            super().store_turn(event)
        finally:
            METER.add(started)


class TimedFileSessionManager(FileSessionManager):
    """Strands' FileSessionManager, timed: every call the agent's hooks make, and its constructor."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter_ns()
        try:
            super().__init__(*args, **kwargs)
        finally:
            METER.add(started)

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter_ns()
        try:
            super().initialize(*args, **kwargs)
        finally:
            METER.add(started)

    def append_message(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter_ns()
        try:
            super().append_message(*args, **kwargs)
        finally:
            METER.add(started)

    def sync_agent(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter_ns()
        try:
            super().sync_agent(*args, **kwargs)
        finally:
            METER.add(started)

    def redact_latest_message(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter_ns()
        try:
            super().redact_latest_message(*args, **kwargs)
        finally:
            METER.add(started)


MODEL = EchoModel()


def replay(name: str, build: Any, turns: int, measured_from: int) -> dict[str, Any]:
    """Turns 1..``turns`` through fresh agents; memory and whole-turn ns of every turn."""
    memory_ns: list[int] = []
    turn_ns: list[int] = []
    started_all = time.perf_counter()
    for turn in range(1, turns + 1):
        text = user_text(turn)
        METER.ns = 0
        started = time.perf_counter_ns()
        agent = build()
        result = agent(text)
        turn_ns.append(time.perf_counter_ns() - started)
        memory_ns.append(METER.ns)
        if str(result).strip() != echo_reply(text):
            raise AssertionError(f"{name}: unexpected reply at turn {turn}")
        if turn > 1 and agent.messages[-3]["content"][0]["text"] != echo_reply(user_text(turn - 1)):
            raise AssertionError(f"{name}: turn {turn} did not get the previous turn as context")
        if turn == 100 or turn % 500 == 0:
            print(f"  {name}: turn {turn} ({time.perf_counter() - started_all:.1f} s)", flush=True)
    window = slice(measured_from, turns)
    return {
        "name": name,
        "memory": latency_summary(memory_ns[window]),
        "turn": latency_summary(turn_ns[window]),
        "memory_ms_by_turn": [round(ns / 1e6, 4) for ns in memory_ns],
        "replay_s": round(time.perf_counter() - started_all, 2),
    }


def ours(directory: Path, synchronous: str, turns: int, stored: int) -> dict[str, Any]:
    store: SessionStore = SQLiteStore(directory / f"ours-{synchronous}.db", synchronous=synchronous)
    try:
        def build() -> Agent:
            return Agent(model=MODEL, system_prompt=SYSTEM_PROMPT, callback_handler=None,
                         hooks=[TimedHooks(store, TurnState(ACTOR, "conv1"), K)])
        result = replay(f"ours-sqlite-{synchronous.lower()}", build, turns, stored)
    finally:
        store.close()
    result["does"] = ("MemoryHooks: get_last_k_turns(k=10) -> 20 messages; add_turns(user, assistant) "
                      f"in one transaction; SQLite WAL, synchronous={synchronous}")
    return result


def strands_file(directory: Path, turns: int, stored: int) -> dict[str, Any]:
    storage = str(directory / "strands-files")

    def build() -> Agent:
        return Agent(model=MODEL, system_prompt=SYSTEM_PROMPT, callback_handler=None,
                     session_manager=TimedFileSessionManager("conv1", storage_dir=storage),
                     conversation_manager=SlidingWindowConversationManager(window_size=2 * K))
    result = replay("strands-file", build, turns, stored)
    result["does"] = ("FileSessionManager per request: read session.json, agent.json, list the messages "
                      "directory, read the 20-message window; write one JSON file per message and rewrite "
                      "agent.json on state changes (atomic rename, no fsync)")
    return result


def openai_agents(directory: Path, stored: int, measured_all: int, measured_limited: int) -> dict[str, Any]:
    if not Path(OPENAI_PYTHON).exists() or subprocess.run([OPENAI_PYTHON, "-c", "import agents"],
                                                          capture_output=True).returncode != 0:
        return {"skipped": f"no OpenAI Agents SDK at {OPENAI_PYTHON} (make bench installs openai-agents there)"}
    command = [OPENAI_PYTHON, str(ROOT / "bench" / "openai_session.py"), "--stored", str(stored),
               "--measured-all", str(measured_all), "--measured-limited", str(measured_limited)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "BENCH_SCRATCH": str(directory)})
    if done.returncode != 0:
        raise RuntimeError(f"openai_session.py failed:\n{done.stderr[-3000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    out: dict[str, Any] = {"version": data["version"], "contestants": []}
    for c in data["contestants"]:
        out["contestants"].append({
            "name": f"openai-sqlite-{c['name']}",
            "memory": latency_summary(c["memory_ns"]),
            "turn": latency_summary(c["turn_ns"]),
            "calls_per_turn": c["calls_per_turn"],
            "does": (f"Runner.run with SQLiteSession (WAL, SQLite's default synchronous=FULL): get_items("
                     f"{'every stored item' if c['limit'] is None else 'newest 20 items'}) + 2 x add_items"),
        })
    return out


# -- AgentCore Memory ------------------------------------------------------------------------------

class CountingService(FakeMemoryService):
    """The tests' fake service, also counting the events each ListEvents answer carries."""

    def __init__(self) -> None:
        super().__init__()
        self.events_returned = 0

    def answer(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        body = super().answer(operation, params)
        self.events_returned += len(body.get("events", []))
        return body


class FakeBoto3Session(boto3.Session):
    """Every ``bedrock-agentcore`` client it builds is answered by ``service`` (the official manager
    builds its clients, and calls the service, inside its constructor)."""

    def __init__(self, service: FakeMemoryService) -> None:
        super().__init__(region_name="us-west-2")
        self.service = service

    def client(self, name: str, *args: Any, **kwargs: Any) -> Any:
        client = super().client(name, *args, **kwargs)
        if name == "bedrock-agentcore":
            self.service.attach(client)
        return client


def _count_turns(service: CountingService, build: Any, first: int, count: int) -> dict[str, Any]:
    calls: list[int] = []
    events: list[int] = []
    operations: collections.Counter[str] = collections.Counter()
    for turn in range(first, first + count):
        before, returned = len(service.calls), service.events_returned
        agent = build()
        result = agent(user_text(turn))
        if str(result).strip() != echo_reply(user_text(turn)):
            raise AssertionError("unexpected reply")
        if agent.messages[-3]["content"][0]["text"] != echo_reply(user_text(turn - 1)):
            raise AssertionError(f"turn {turn} did not get the previous turn as context")
        made = service.calls[before:]
        calls.append(len(made))
        events.append(service.events_returned - returned)
        operations.update(name for name, _ in made)
    return {"calls_per_turn": max(calls), "calls_per_turn_mean": sum(calls) / count,
            "by_operation_per_turn": {k: v / count for k, v in sorted(operations.items())},
            "events_returned_per_turn": max(events), "turns": count}


def agentcore_ours(stored: int, measured: int) -> dict[str, Any]:
    service = CountingService()
    store = AgentCoreStore(MEMORY_ID, region_name="us-west-2", boto3_session=boto3.Session(region_name="us-west-2"))
    service.attach(store.manager._data_plane_client)
    events = service.events[(MEMORY_ID, ACTOR, "conv1")]
    start = datetime.now(timezone.utc) - timedelta(seconds=stored + 60)
    for turn in range(1, stored + 1):
        stamp = start + timedelta(seconds=turn)
        seq = next(service._seq)
        text = user_text(turn)
        events.append({
            "memoryId": MEMORY_ID, "actorId": ACTOR, "sessionId": "conv1",
            "eventId": f"{int(stamp.timestamp() * 1000)}#{seq:08x}", "eventTimestamp": stamp,
            "payload": [{"conversational": {"content": {"text": text}, "role": "USER"}},
                        {"conversational": {"content": {"text": echo_reply(text)}, "role": "ASSISTANT"}}],
            "metadata": {COUNT_KEY: {"stringValue": str(turn)}}, "_seq": seq,
        })
    try:
        result = _count_turns(service, lambda: Agent(model=MODEL, system_prompt=SYSTEM_PROMPT, callback_handler=None,
                                                     hooks=[MemoryHooks(store, TurnState(ACTOR, "conv1"), K)]),
                              stored + 1, measured)
    finally:
        store.close()
    result["name"] = "ours-agentcore"
    result["does"] = "ListEvents (one page, <= 2k events, summaries filtered out) + one CreateEvent (user + assistant)"
    return result


def agentcore_official(stored: int, measured: int, real_turns: int = 12) -> dict[str, Any]:
    from bedrock_agentcore.memory.integrations.strands.config import AgentCoreMemoryConfig
    from bedrock_agentcore.memory.integrations.strands.session_manager import AgentCoreMemorySessionManager

    service = CountingService()
    session = FakeBoto3Session(service)

    def build() -> Agent:
        manager = AgentCoreMemorySessionManager(
            AgentCoreMemoryConfig(memory_id=MEMORY_ID, session_id="conv1", actor_id=ACTOR), region_name="us-west-2",
            boto_session=session)
        return Agent(model=MODEL, system_prompt=SYSTEM_PROMPT, callback_handler=None, session_manager=manager,
                     conversation_manager=SlidingWindowConversationManager(window_size=2 * K))

    key = (MEMORY_ID, ACTOR, "conv1")
    for turn in range(1, real_turns + 1):
        before = len(service.events[key])
        agent = build()
        agent(user_text(turn))
    template = [e for e in service.events[key][before:]]
    _extend_official(service, key, template, real_turns, stored)
    result = _count_turns(service, build, stored + 1, measured)
    result["name"] = "official-agentcore-session-manager"
    result["does"] = ("AgentCoreMemorySessionManager per request: ListEvents for the session and agent state, "
                      "ListEvents of every event of the session (100 per page), then one CreateEvent per message "
                      "and per agent-state change")
    result["events_stored"] = len(service.events[key])
    return result


def _extend_official(service: FakeMemoryService, key: tuple[str, str, str], template: list[dict[str, Any]],
                     real_turns: int, stored: int) -> None:
    """Turns ``real_turns+1..stored`` as the official manager writes them: copies of its last real turn's
    events with the turn's texts and the conversation manager's offset advanced."""
    events = service.events[key]
    # the real turns move back in time, so the copies fit between them and now (the service orders by time)
    span = timedelta(milliseconds=10 * (stored - real_turns + 1)) + timedelta(seconds=1)
    for event in events:
        event["eventTimestamp"] -= span
    last = max(e["eventTimestamp"] for e in events)
    for turn in range(real_turns + 1, stored + 1):
        shift = turn - real_turns
        for event in template:
            clone = copy.deepcopy(event)
            stamp = last + timedelta(milliseconds=10 * shift + template.index(event) + 1)
            seq = next(service._seq)
            clone.update(eventTimestamp=stamp, eventId=f"{int(stamp.timestamp() * 1000)}#{seq:08x}", _seq=seq)
            for item in clone["payload"]:
                if "conversational" in item:
                    record = json.loads(item["conversational"]["content"]["text"])
                    for block in record["message"]["content"]:
                        if "text" in block:
                            block["text"] = (user_text(turn) if record["message"]["role"] == "user"
                                             else echo_reply(user_text(turn)))
                    item["conversational"]["content"]["text"] = json.dumps(record)
                elif "blob" in item:
                    state = json.loads(item["blob"])
                    manager_state = state.get("conversation_manager_state") or {}
                    if "removed_message_count" in manager_state:
                        manager_state["removed_message_count"] += 2 * shift
                    item["blob"] = json.dumps(state)
            events.append(clone)


# -- the run -----------------------------------------------------------------------------------------

def plot(data: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1.6, 1.3, 0.9]})
    colors = {"ours-sqlite-normal": "tab:blue", "ours-sqlite-full": "tab:cyan", "strands-file": "tab:green",
              "openai-sqlite-default": "tab:purple", "openai-sqlite-limit20": "tab:pink"}
    for c in data["contestants"]:
        series = c.get("memory_ms_by_turn")
        if not series:
            continue
        window = 25
        rolling = [percentile(series[max(0, i - window):i + 1], 50) for i in range(len(series))]
        left.plot(range(1, len(series) + 1), rolling, color=colors.get(c["name"]), label=c["name"])
    for c in data["contestants"]:
        if c.get("memory_ms_by_turn") is None:
            left.plot([data["stored"] + 1, data["stored"] + data["measured"]], [c["memory"]["p50_ms"]] * 2,
                      lw=3, color=colors.get(c["name"]), label=f"{c['name']} (pre-filled)")
    left.axvline(data["stored"], color="black", lw=0.8, ls=":")
    left.set_yscale("log")
    left.set_xlabel("turn of the replayed conversation")
    left.set_ylabel("memory ms per turn (rolling median of 25)")
    left.set_title("Memory time per turn across the replay")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    names = [c["name"] for c in data["contestants"]]
    values = [c["memory"]["p50_ms"] for c in data["contestants"]]
    bars = middle.bar(range(len(names)), values, color=[colors.get(n) for n in names])
    for bar, c in zip(bars, data["contestants"]):
        middle.annotate(f"{c['memory']['p50_ms']:.2f} ms\n{c.get('ratio_label', '')}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7)
    middle.set_xticks(range(len(names)), [n.replace("-", "\n", 1) for n in names], fontsize=7)
    middle.set_yscale("log")
    middle.set_ylim(top=max(values) * 6)
    middle.set_ylabel("memory ms per turn, p50")
    middle.set_title(f"At {data['stored']:,} stored turns")
    ac = data.get("agentcore") or {}
    if ac:
        labels = ["ours", "official\nmanager"]
        calls = [ac["ours"]["calls_per_turn"], ac["official"]["calls_per_turn"]]
        bars = right.bar(labels, calls, color=["tab:orange", "tab:brown"])
        for bar, side in zip(bars, (ac["ours"], ac["official"])):
            right.annotate(f"{side['calls_per_turn']} calls\n{side['events_returned_per_turn']} events read",
                           (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                           fontsize=7)
        right.set_ylim(0, max(calls) * 1.3)
        right.set_ylabel("AgentCore Memory calls per turn")
        right.set_title(f"AgentCore Memory at {data['stored']:,} turns")
    fig.suptitle(data["machine_line"], fontsize=8, y=0.01)
    save_plot(fig, "alternatives")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stored", type=int, default=1000, help="turns stored before the measured ones")
    parser.add_argument("--measured", type=int, default=150, help="measured turns (fast contestants)")
    parser.add_argument("--measured-openai-default", type=int, default=30,
                        help="measured turns for the OpenAI session with default settings (it reloads everything)")
    parser.add_argument("--measured-agentcore", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 stored turns, 5 measured")
    args = parser.parse_args()
    if quick_run(args.quick):
        parser.set_defaults(stored=20, measured=5, measured_openai_default=3, measured_agentcore=2)
        args = parser.parse_args()  # flags given still win
    turns = args.stored + args.measured
    print(f"alternatives: the same conversation, {args.stored:,} stored turns, then {args.measured} measured")

    contestants: list[dict[str, Any]] = []
    notes: list[str] = []
    with scratch_dir("alternatives") as directory:
        contestants.append(ours(directory, "NORMAL", turns, args.stored))
        contestants.append(ours(directory, "FULL", turns, args.stored))
        contestants.append(strands_file(directory, turns, args.stored))
        openai = openai_agents(directory, args.stored, args.measured_openai_default, args.measured)
        if "skipped" in openai:
            notes.append(f"OpenAI Agents SDK: {openai['skipped']}")
            print(f"note: {openai['skipped']}")
        else:
            contestants.extend(openai["contestants"])
    agentcore = {"ours": agentcore_ours(args.stored, args.measured_agentcore),
                 "official": agentcore_official(args.stored, args.measured_agentcore)}

    by_name = {c["name"]: c for c in contestants}
    normal, full = by_name["ours-sqlite-normal"], by_name["ours-sqlite-full"]
    for c in contestants:
        base = full if c["name"].startswith("openai") else normal
        c["compared_with"] = base["name"]
        c["memory_ratio"] = round(c["memory"]["p50_ms"] / base["memory"]["p50_ms"], 2)
        c["turn_ratio"] = round(c["turn"]["p50_ms"] / base["turn"]["p50_ms"], 2)
        c["ratio_label"] = "" if c is base else f"{c['memory_ratio']:.1f}x ours ({base['name'].rsplit('-', 1)[1].upper()})"
    rows = [[c["name"], fmt(c["memory"]["p50_ms"]), fmt(c["memory"]["p99_ms"]), fmt(c["turn"]["p50_ms"]),
             c["memory"]["samples"], f"{c['memory_ratio']:.1f}x", f"{c['turn_ratio']:.2f}x", c["compared_with"]]
            for c in contestants]
    print_table(f"Memory time per turn at {args.stored:,} stored turns (fresh agent per turn, echo model)",
                ["contestant", "memory p50 ms", "memory p99 ms", "whole turn p50 ms", "turns",
                 "memory vs ours", "turn vs ours", "ours ="], rows)
    for c in contestants:
        print(f"  {c['name']}: {c['does']}")
    print_table(f"AgentCore Memory at {args.stored:,} stored turns (Stubber fake, calls per turn)",
                ["contestant", "calls/turn", "by operation", "events read/turn"],
                [[s["name"], s["calls_per_turn"], s["by_operation_per_turn"], s["events_returned_per_turn"]]
                 for s in agentcore.values()])
    file_ratio = by_name["strands-file"]["memory_ratio"]
    checks = [(">= 10x faster than Strands FileSessionManager (memory time per turn)",
               file_ratio >= TARGET_FILE_RATIO, f"{file_ratio:.1f}x")]
    print_table("Targets", ["target", "result", "measured"], [[c[0], verdict(c[1]), c[2]] for c in checks])

    data = {
        "machine_line": machine_line(),
        "stored": args.stored,
        "measured": args.measured,
        "k": K,
        "contestants": contestants,
        "agentcore": agentcore,
        "openai_agents_version": openai.get("version"),
        "targets": [{"target": c[0], "met": c[1], "measured": c[2]} for c in checks],
        "notes": notes,
    }
    write_results("alternatives", data)
    plot(data)


if __name__ == "__main__":
    sys.exit(main())
