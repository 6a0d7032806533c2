"""What every model provider and every caller of a model shares: message text, one agent call, a text stream."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from strands import Agent
from strands.agent import AgentResult
from strands.models import Model
from strands.types.content import Message, Messages
from strands.types.streaming import StreamEvent

# BYTES_PER_TOKEN and MESSAGE_OVERHEAD_TOKENS: still importable from here, where callers found them
from core.tokens import BYTES_PER_TOKEN, MESSAGE_OVERHEAD_TOKENS, message_tokens  # noqa: F401

T = TypeVar("T")

#: a chat message's cost in tokens (``core.tokens``), under the name its callers import it by
estimate_tokens = message_tokens


#: how the memory hooks open the rolling summary they append to the system prompt (after a blank line);
#: the local model moves that section to the end of the prompt (see ``models.local``)
SUMMARY_HEADING = "Summary of the earlier part of this conversation"


def split_summary(system_prompt: str | None) -> tuple[str | None, str | None]:
    """The system prompt without the rolling summary section, and that section (None when there is none)."""
    if not system_prompt:
        return system_prompt, None
    at = system_prompt.find(SUMMARY_HEADING)
    if at < 0:
        return system_prompt, None
    return system_prompt[:at].rstrip() or None, system_prompt[at:]


def text_of(message: Message | None) -> str:
    """The text blocks of a Strands message, joined."""
    if not message:
        return ""
    return "".join(block["text"] for block in message.get("content", []) if "text" in block)


def reply_text(result: AgentResult) -> str:
    """The final assistant text of an agent call, stripped."""
    return text_of(result.message).strip()


def last_user_text(messages: Messages) -> str:
    """Text of the newest user message that carries text (tool results are skipped)."""
    for message in reversed(messages):
        if message["role"] != "user":
            continue
        texts = [block["text"] for block in message["content"] if "text" in block]
        if texts:
            return "".join(texts)
    return ""


def run_agent(agent: Agent, prompt: str) -> AgentResult:
    """``agent(prompt)``, on this thread's own event loop when it has none running.

    Strands' synchronous ``agent(prompt)`` starts a new thread (a new ``ThreadPoolExecutor``)
    for every invocation, so that it also works inside a running event loop. The runtime
    already calls our handler on a worker thread with no loop, so the request's turn would hop
    threads twice: here it runs on a loop of its own on the calling thread instead, with the
    same context variables, result and exceptions (0.25-1.3 ms of CPU less per turn here, see
    docs/benchmarks.md). Inside a running loop (the rolling summary's call, from a hook), or
    for an agent with a Strands memory manager (which the synchronous call flushes), it is
    ``agent(prompt)``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if agent.memory_manager is None:
            return asyncio.run(agent.invoke_async(prompt))
    return agent(prompt)


def run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``make()`` run to completion: on a loop of this thread's own, or, inside a running loop, on another thread.

    The other thread gets a copy of this thread's context variables, as ``run_agent``'s agents do.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    context = contextvars.copy_context()
    with ThreadPoolExecutor(1, thread_name_prefix="model-call") as pool:
        return pool.submit(context.run, lambda: asyncio.run(make())).result()


async def stream_text(model: Model, prompt: str, system_prompt: str,
                      max_chars: int | None = None) -> tuple[str, str | None]:
    """One tool-less call of ``model`` with one user message: the reply's text and its stop reason.

    The provider's own stream, read directly: no ``Agent``, so none of an agent invocation's
    per-event work (its event loop, message copies, span events) for a call whose reply is only
    kept as text. Provider errors propagate unchanged. ``max_chars``: stop reading (and close the
    stream) once the stripped text is longer than that, a caller that keeps no more than
    ``max_chars`` of it; the stop reason is then None.
    """
    messages: Messages = [{"role": "user", "content": [{"text": prompt}]}]
    parts: list[str] = []
    read = 0
    stop: str | None = None
    async with contextlib.aclosing(model.stream(messages, None, system_prompt)) as events:
        async for event in events:
            if "contentBlockDelta" in event:
                text = event["contentBlockDelta"]["delta"].get("text", "")
                parts.append(text)
                read += len(text)
                if max_chars is not None and read > max_chars and len("".join(parts).strip()) > max_chars:
                    return "".join(parts), None  # what follows would be clipped off anyway
            elif "messageStop" in event:
                stop = event["messageStop"].get("stopReason")
    return "".join(parts), stop


def text_stream(text: str, stop_reason: str = "end_turn") -> list[StreamEvent]:
    """The stream events of one assistant text reply, a word per delta (so streaming shows)."""
    words = text.split(" ")
    deltas = [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]
    return [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockStart": {"start": {}}},
        *({"contentBlockDelta": {"delta": {"text": d}}} for d in deltas if d),
        {"contentBlockStop": {}},
        {"messageStop": {"stopReason": stop_reason}},
        {
            "metadata": {
                "usage": {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0},
                "metrics": {"latencyMs": 0},
            }
        },
    ]
