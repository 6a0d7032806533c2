"""``MODEL_PROVIDER=ollama``: a model served by Ollama, through Strands' own ``OllamaModel``.

Strands opens a fresh ``ollama.AsyncClient`` per call (``/api/chat``, streamed), so the
one model object serves every request's event loop. Ollama's context length is its own
setting (``OLLAMA_CONTEXT_LENGTH`` on the Ollama server, 4,096 tokens by default in recent
releases): it must hold ``MEMORY_MAX_TOKENS`` plus ``MAX_TOKENS`` plus the prompt, or Ollama
silently drops the oldest part of the prompt.
"""

from __future__ import annotations

from strands.models.ollama import OllamaModel

from core.settings import Settings


def create_ollama_model(settings: Settings, max_tokens: int) -> OllamaModel:
    """``OllamaModel`` on ``OLLAMA_HOST`` / ``OLLAMA_MODEL``, asking for at most ``max_tokens`` (``num_predict``)."""
    assert settings.ollama_model is not None  # Settings.from_env requires it for this provider
    return OllamaModel(settings.ollama_host, model_id=settings.ollama_model, max_tokens=max_tokens)
