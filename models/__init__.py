"""Model providers, one module each (``bedrock``, ``local`` llama.cpp, ``openai``, ``ollama``, ``echo``), and the summariser.

One model object is built per process and shared by every request's Agent
(the model holds no conversation state; the Agent does, and there is one Agent
per request). Providers are imported only when chosen, so only the chosen one's
driver must be installed. Every provider is wrapped in ``BoundedModel``: each call
ends by ``MODEL_TIMEOUT_S``, and summaries go to a twin capped at ``SUMMARY_MAX_TOKENS``.
"""

from __future__ import annotations

import logging
import time

from strands.models import Model

from core.settings import Settings
from models.base import estimate_tokens, last_user_text, reply_text, run_agent, text_of, text_stream
from models.bounded import BoundedModel, ModelTimeout, summary_model
from models.echo import EchoModel

__all__ = ["BoundedModel", "EchoModel", "ModelTimeout", "configure_model", "create_model", "estimate_tokens",
           "last_user_text", "reply_text", "resolve_provider", "run_agent", "summary_model", "text_of",
           "text_stream"]

logger = logging.getLogger(__name__)


def resolve_provider(settings: Settings) -> tuple[str, str]:
    """The provider and why: ``MODEL_PROVIDER`` if set; else bedrock where AWS credentials resolve, else local."""
    if settings.model_provider:
        return settings.model_provider, "MODEL_PROVIDER is set"
    import boto3

    if boto3.Session().get_credentials() is not None:
        return "bedrock", "MODEL_PROVIDER is unset and AWS credentials resolve"
    return "local", "MODEL_PROVIDER is unset and no AWS credentials resolve"


def provider_model(provider: str, settings: Settings, max_tokens: int) -> tuple[Model, str]:
    """The chosen provider's Strands model asking for at most ``max_tokens``, and a detail for the log line."""
    if provider == "echo":
        return EchoModel(), ""
    if provider == "bedrock":
        from models.bedrock import create_bedrock_model

        return create_bedrock_model(settings, max_tokens), f" | region=<{settings.aws_region}>"
    if provider == "local":
        from models.local import create_local_model

        local = create_local_model(settings.local_model_path, max_tokens, settings.local_model_parallel,
                                   settings.local_model_context)
        return local, (f" | base_url=<{local.base_url}> | slots=<{settings.local_model_parallel}> | "
                       f"context_per_slot=<{settings.local_model_context}>")
    if provider == "openai":
        from models.openai_compatible import create_openai_model

        return create_openai_model(settings, max_tokens), f" | base_url=<{settings.openai_base_url or 'api.openai.com'}>"
    if provider == "ollama":
        from models.ollama import create_ollama_model

        return create_ollama_model(settings, max_tokens), f" | host=<{settings.ollama_host}>"
    raise NotImplementedError(f"MODEL_PROVIDER={provider!r} is not available in this build")


def configure_model(settings: Settings) -> tuple[Settings, BoundedModel]:
    """Choose the provider, fill in its defaults, build the process's one model; log which and why, once.

    Returns the settings with every model limit resolved (``Settings.for_provider``) and the
    model (for ``local``, its llama.cpp server started), bounded by ``MODEL_TIMEOUT_S``.
    """
    started = time.perf_counter()
    provider, reason = resolve_provider(settings)
    settings = settings.for_provider(provider)
    assert settings.max_tokens is not None and settings.summary_max_tokens is not None
    assert settings.model_timeout_s is not None
    chat, detail = provider_model(provider, settings, settings.max_tokens)
    summaries, _ = provider_model(provider, settings, settings.summary_max_tokens)
    model = BoundedModel(chat, settings.model_timeout_s, summaries)
    logger.info(
        "model_provider=<%s> | reason=<%s> | model=<%s>%s | max_tokens=<%d> | summary_max_tokens=<%d> | "
        "memory_max_tokens=<%s> | timeout_s=<%g> | model ready in %.2f s",
        provider, reason, model.get_config().get("model_id"), detail, settings.max_tokens,
        settings.summary_max_tokens, settings.memory_max_tokens, settings.model_timeout_s,
        time.perf_counter() - started,
    )
    return settings, model


def create_model(settings: Settings) -> BoundedModel:
    """The process's one model for ``settings`` (see ``configure_model``)."""
    return configure_model(settings)[1]
