"""Model selection: ``bedrock`` with AWS, ``local`` (an embedded SmolLM2) without, ``echo`` for tests.

One model object is built per process and shared by every request's Agent
(the model holds no conversation state; the Agent does, and there is one Agent
per request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

from strands import Agent
from strands.agent import AgentResult
from strands.models import Model
from strands.types.content import Messages
from strands.types.streaming import StreamEvent

from config import Settings

logger = logging.getLogger(__name__)


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
    the README's Benchmarks). Inside a running loop (the rolling summary's call, from a hook), or
    for an agent with a Strands memory manager (which the synchronous call flushes), it is
    ``agent(prompt)``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if agent.memory_manager is None:
            return asyncio.run(agent.invoke_async(prompt))
    return agent(prompt)


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


class EchoModel(Model):
    """Offline and deterministic: replies ``You said '<message>'``. Not a language model."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {"model_id": "echo"}

    def update_config(self, **model_config: Any) -> None:
        self.config.update(model_config)

    def get_config(self) -> dict[str, Any]:
        return self.config

    async def structured_output(self, output_model: Any, prompt: Messages, system_prompt: str | None = None,
                                **kwargs: Any) -> AsyncGenerator[dict[str, Any], None]:
        raise NotImplementedError("the echo model has no structured output")
        yield {}  # pragma: no cover - makes this an async generator

    async def stream(self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncIterable[StreamEvent]:
        for event in text_stream(f"You said '{last_user_text(messages)}'"):
            yield event


def resolve_provider(settings: Settings) -> tuple[str, str]:
    """The provider and why: ``MODEL_PROVIDER`` if set; else bedrock where AWS credentials resolve, else local."""
    if settings.model_provider:
        return settings.model_provider, "MODEL_PROVIDER is set"
    import boto3

    if boto3.Session().get_credentials() is not None:
        return "bedrock", "MODEL_PROVIDER is unset and AWS credentials resolve"
    return "local", "MODEL_PROVIDER is unset and no AWS credentials resolve"


def create_model(settings: Settings) -> Model:
    """Build the process's one model (for ``local``, start its llama.cpp server); log which and why, once."""
    started = time.perf_counter()
    provider, reason = resolve_provider(settings)
    detail = ""
    if provider == "echo":
        model: Model = EchoModel()
    elif provider == "bedrock":
        from botocore.config import Config as BotocoreConfig
        from strands.models import BedrockModel

        model = BedrockModel(
            model_id=settings.bedrock_model_id,
            region_name=settings.aws_region,
            max_tokens=settings.max_tokens,
            boto_client_config=BotocoreConfig(retries={"mode": "standard", "max_attempts": 4}),
        )
        detail = f" | region=<{settings.aws_region}>"
    elif provider == "local":
        from local_model import create_local_model

        local = create_local_model(settings.local_model_path, settings.max_tokens)
        model = local
        detail = f" | base_url=<{local.base_url}> | max_tokens=<{local.get_config()['params']['max_tokens']}>"
    else:
        raise NotImplementedError(f"MODEL_PROVIDER={provider!r} is not available in this build")
    logger.info(
        "model_provider=<%s> | reason=<%s> | model=<%s>%s | model ready in %.2f s",
        provider, reason, model.get_config().get("model_id"), detail, time.perf_counter() - started,
    )
    return model
