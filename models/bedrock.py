"""``MODEL_PROVIDER=bedrock``: Strands' ``BedrockModel``, the default wherever AWS credentials resolve."""

from __future__ import annotations

from botocore.config import Config as BotocoreConfig
from strands.models import BedrockModel

from core.settings import Settings


def create_bedrock_model(settings: Settings, max_tokens: int) -> BedrockModel:
    """Bedrock Converse with botocore's standard retries (throttling and transient errors, 4 attempts)."""
    return BedrockModel(
        model_id=settings.bedrock_model_id,
        region_name=settings.aws_region,
        max_tokens=max_tokens,
        boto_client_config=BotocoreConfig(retries={"mode": "standard", "max_attempts": 4}),
    )
