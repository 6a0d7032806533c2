"""``MODEL_PROVIDER=bedrock``: Strands' ``BedrockModel``, the default wherever AWS credentials resolve."""

from __future__ import annotations

from botocore.config import Config as BotocoreConfig
from strands.models import BedrockModel

from core.settings import Settings


#: seconds to open a connection to Bedrock (botocore's default is 60)
CONNECT_TIMEOUT_S = 10.0


def create_bedrock_model(settings: Settings, max_tokens: int) -> BedrockModel:
    """Bedrock Converse with botocore's standard retries (throttling and transient errors, 4 attempts).

    Each read waits at most ``MODEL_TIMEOUT_S`` (botocore's default is 60 s): the call as a whole is
    bounded by that deadline anyway (``models.bounded``), and botocore reads on a thread that cannot be
    interrupted, so a stalled connection is let go of at the next read timeout, not minutes later.
    """
    assert settings.model_timeout_s is not None
    return BedrockModel(
        model_id=settings.bedrock_model_id,
        region_name=settings.aws_region,
        max_tokens=max_tokens,
        boto_client_config=BotocoreConfig(retries={"mode": "standard", "max_attempts": 4},
                                          read_timeout=settings.model_timeout_s,
                                          connect_timeout=min(CONNECT_TIMEOUT_S, settings.model_timeout_s)),
    )
