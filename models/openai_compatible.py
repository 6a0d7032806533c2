"""``MODEL_PROVIDER=openai``: any OpenAI-compatible chat server, through Strands' own ``OpenAIModel``.

For a model the user already serves: Ollama (``http://127.0.0.1:11434/v1``), LM Studio
(``http://127.0.0.1:1234/v1``), vLLM (``http://127.0.0.1:8000/v1``), a llama.cpp server
(``http://127.0.0.1:8080/v1``), or api.openai.com itself (``OPENAI_API_KEY`` without a
base URL). Strands opens a fresh ``openai.AsyncOpenAI`` client per call, so the one
model object serves every request's event loop.
"""

from __future__ import annotations

from strands.models.openai import OpenAIModel

from core.settings import Settings

#: what the openai client sends as the key when none is set: local servers ignore it, but the client needs one
NO_KEY = "not-needed"


def create_openai_model(settings: Settings, max_tokens: int) -> OpenAIModel:
    """``OpenAIModel`` on ``OPENAI_BASE_URL`` / ``OPENAI_MODEL``; ``max_tokens`` is sent with every request.

    The client's own retries (2, on connection errors, 429 and 5xx) stay on; ``MODEL_TIMEOUT_S``
    bounds the whole call, retries included.
    """
    assert settings.openai_model is not None  # Settings.from_env requires it for this provider
    client_args: dict[str, object] = {"api_key": settings.openai_api_key or NO_KEY}
    if settings.openai_base_url:
        client_args["base_url"] = settings.openai_base_url
    return OpenAIModel(client_args=client_args, model_id=settings.openai_model, params={"max_tokens": max_tokens})
