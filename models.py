"""Model selection: ``bedrock`` in production, ``echo`` for smoke tests and benchmarks.

One model object is built per process and shared by every request's Agent
(the model holds no conversation state; the Agent does, and there is one Agent
per request).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

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


def resolve_provider(settings: Settings) -> str:
    """``MODEL_PROVIDER`` if set; otherwise bedrock where AWS credentials resolve, else echo."""
    if settings.model_provider:
        return settings.model_provider
    import boto3

    if boto3.Session().get_credentials() is not None:
        return "bedrock"
    return "echo"


def create_model(settings: Settings) -> Model:
    provider = resolve_provider(settings)
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
    else:
        raise NotImplementedError(f"MODEL_PROVIDER={provider!r} is not available in this build")
    logger.info("model_provider=<%s> | model=<%s> | model ready", provider, model.get_config().get("model_id"))
    return model
