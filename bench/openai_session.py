"""The OpenAI Agents SDK side of benchmark 2, run in its own venv (see the Makefile's ``bench`` target).

``openai-agents`` cannot join the project's venv: every release that installs here needs other
versions of packages the project already pins (``websockets``, ``mcp``). So ``bench/alternatives.py``
runs this file with that venv's Python and reads the JSON it prints on its last line.

Per turn, ``Runner.run(agent, text, session=session)`` with an echo model (the same reply text as
ours), and ``SQLiteSession(session_id, db_path)`` on a file in WAL mode. The runner calls
``session.get_items()`` once (the history it sends to the model; with the default settings that is
every stored item, with ``SessionSettings(limit=20)`` the newest 20 items = 10 turns) and
``session.add_items(...)`` twice (the user input, then the model's output). The time inside those
session calls is the memory time of the turn. One ``SQLiteSession`` object per conversation is
reused across turns (the cheapest way to use it: no per-request schema check).

Pre-fill: ``add_items`` with exactly the items the runner stores (checked against a real first turn).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

from conversation import echo_reply, user_text  # noqa: E402

from agents import Agent, Runner, SQLiteSession, set_tracing_disabled  # noqa: E402
from agents.items import ModelResponse  # noqa: E402
from agents.memory import SessionSettings  # noqa: E402
from agents.models.interface import Model  # noqa: E402
from agents.testing.model import assistant_message  # noqa: E402
from agents.usage import Usage  # noqa: E402

SESSION_METHODS = ("get_items", "add_items", "pop_item", "clear_session")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


class EchoModel(Model):
    """Replies ``You said '<last user text>'``, like the Strands echo model the other contestants get."""

    async def get_response(self, system_instructions: Any, input: Any, model_settings: Any, tools: Any,
                           output_schema: Any, handoffs: Any, tracing: Any, *, previous_response_id: Any = None,
                           conversation_id: Any = None, prompt: Any = None) -> ModelResponse:
        items = input if isinstance(input, list) else [{"role": "user", "content": input}]
        text = next((_text(i.get("content")) for i in reversed(items) if i.get("role") == "user"), "")
        return ModelResponse(output=[assistant_message(echo_reply(text), item_id="msg_echo")], usage=Usage(),
                             response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the benchmark does not stream")


class Meter:
    """Wraps the session's methods on the instance (its type stays ``SQLiteSession``)."""

    def __init__(self, session: SQLiteSession) -> None:
        self.ns = 0
        self.calls: dict[str, int] = {}
        for name in SESSION_METHODS:
            setattr(session, name, self._wrap(name, getattr(session, name)))

    def _wrap(self, name: str, method: Any) -> Any:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return await method(*args, **kwargs)
            finally:
                self.ns += time.perf_counter_ns() - started
                self.calls[name] = self.calls.get(name, 0) + 1
        return timed

    def reset(self) -> None:
        self.ns = 0
        self.calls = {}


def stored_items(turn: int) -> list[dict[str, Any]]:
    """What the runner stores for one turn: the user input item, then the output message item."""
    text = user_text(turn)
    return [{"content": text, "role": "user"},
            assistant_message(echo_reply(text), item_id="msg_echo").model_dump(exclude_unset=True)]


async def contestant(name: str, settings: SessionSettings, directory: Path, stored: int, measured: int) -> dict:
    agent = Agent(name="assistant", instructions="You are a helpful assistant.", model=EchoModel())
    session = SQLiteSession(f"conv-{name}", directory / f"{name}.db", session_settings=settings)
    meter = Meter(session)
    # turn 1 for real: its stored items are the template of the pre-fill
    await Runner.run(agent, user_text(1), session=session)
    if await session.get_items() != stored_items(1):
        raise AssertionError(f"the runner stored {await session.get_items()!r}, not what the pre-fill writes")
    for start in range(2, stored + 1, 500):
        await session.add_items([i for t in range(start, min(stored + 1, start + 500)) for i in stored_items(t)])
    memory_ns: list[int] = []
    turn_ns: list[int] = []
    calls: dict[str, int] = {}
    for turn in range(stored + 1, stored + measured + 1):
        meter.reset()
        started = time.perf_counter_ns()
        result = await Runner.run(agent, user_text(turn), session=session)
        turn_ns.append(time.perf_counter_ns() - started)
        memory_ns.append(meter.ns)
        if result.final_output != echo_reply(user_text(turn)):
            raise AssertionError(f"unexpected reply {result.final_output!r}")
        for key, value in meter.calls.items():
            calls[key] = calls.get(key, 0) + value
    history = await session.get_items(limit=10 * (stored + measured))
    if len(history) != 2 * (stored + measured):
        raise AssertionError(f"{len(history)} items stored, expected {2 * (stored + measured)}")
    session.close()
    return {"name": name, "limit": settings.limit, "memory_ns": memory_ns, "turn_ns": turn_ns,
            "calls_per_turn": {k: v / measured for k, v in calls.items()}}


async def run(stored: int, measured_all: int, measured_limited: int) -> dict:
    set_tracing_disabled(True)
    with tempfile.TemporaryDirectory(prefix="bench-openai-", dir=os.environ.get("BENCH_SCRATCH")) as tmp:
        directory = Path(tmp)
        return {
            "contestants": [
                await contestant("default", SessionSettings(), directory, stored, measured_all),
                await contestant("limit20", SessionSettings(limit=20), directory, stored, measured_limited),
            ],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stored", type=int, default=1000)
    parser.add_argument("--measured-all", type=int, default=30)
    parser.add_argument("--measured-limited", type=int, default=200)
    args = parser.parse_args()
    from importlib import metadata

    result = asyncio.run(run(args.stored, args.measured_all, args.measured_limited))
    result["version"] = metadata.version("openai-agents")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
