"""Model providers, one module each (``bedrock``, ``local`` llama.cpp, ``echo``), and the summariser.

One model object is built per process and shared by every request's Agent
(the model holds no conversation state; the Agent does, and there is one Agent
per request). Providers are imported only when chosen, so only the chosen one's
driver must be installed.
"""

from __future__ import annotations

import logging
import time

from strands.models import Model

from core.settings import Settings
from models.base import last_user_text, reply_text, run_agent, text_of, text_stream
from models.echo import EchoModel

__all__ = ["EchoModel", "create_model", "last_user_text", "reply_text", "resolve_provider", "run_agent",
           "text_of", "text_stream"]

logger = logging.getLogger(__name__)


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
        from models.bedrock import create_bedrock_model

        model = create_bedrock_model(settings)
        detail = f" | region=<{settings.aws_region}>"
    elif provider == "local":
        from models.local import create_local_model

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
