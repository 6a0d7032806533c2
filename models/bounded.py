"""Every model call bounded in time (``MODEL_TIMEOUT_S``), and a twin of the model for summaries.

A stalled or queued model must never hold a request for minutes: ``BoundedModel``
wraps whichever provider was chosen and ends any one call (``stream`` from the
request to the last event, queueing in the server included) at the deadline with
``ModelTimeout``, a ``TimeoutError``, which ``service.failures`` answers with 503.
The turn's memory hooks then store nothing (Strands gives them no result).

The provider's own stream runs in a task of its own and hands its events over a
queue, so the deadline can interrupt it anywhere (waiting for the first byte,
between two chunks) and cancelling that task runs the provider's own clean-up on
the task that opened its HTTP stream: the connection is closed, and a llama.cpp
server frees the slot it was writing into.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any, TypeVar

from strands.models import Model
from strands.types.content import Messages
from strands.types.streaming import StreamEvent

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: seconds a call past its deadline (or abandoned) waits for the provider's own clean-up before answering
CLEANUP_GRACE_S = 2.0

_END = object()
_LATE = object()  # the deadline passed


class ModelTimeout(TimeoutError):
    """One model call did not finish within ``MODEL_TIMEOUT_S``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete reply within MODEL_TIMEOUT_S={seconds:g} s")
        self.seconds = seconds


async def within(events: AsyncIterable[T], seconds: float) -> AsyncGenerator[T, None]:
    """``events`` passed on as they come, until ``seconds`` after the first ``__anext__``; then ``ModelTimeout``.

    ``events`` is consumed by a task of its own; closing this generator early (a client
    that went away) or reaching the deadline cancels that task and waits for its clean-up.
    The deadline is one timer for the whole call, which puts ``_LATE`` in the queue: an
    ``asyncio.wait_for`` per event would cost a task and a turn of the event loop for each
    of a reply's hundreds of events (on a busy server, a GIL hand-off each time).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def produce() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
        finally:
            queue.put_nowait(_END)  # never blocks (unbounded): also sent when cancelled

    producer = asyncio.create_task(produce())
    timer = loop.call_at(deadline, queue.put_nowait, _LATE)
    try:
        while True:
            item = await queue.get()  # no suspension while events are waiting
            if item is _LATE or loop.time() >= deadline:
                raise ModelTimeout(seconds)
            if item is _END:
                await producer  # the provider's own failure, if it failed
                return
            yield item
    finally:
        timer.cancel()
        if not producer.done():
            producer.cancel()
            # the provider's clean-up (closing its HTTP stream, llama.cpp freeing the slot) is awaited, but only
            # for CLEANUP_GRACE_S: a provider reading on a thread of its own (botocore, for Bedrock) cannot be
            # interrupted and would hold the request until its own read timeout; it then ends in the background
            done, _ = await asyncio.wait({producer}, timeout=CLEANUP_GRACE_S)
            if done:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    producer.result()
            else:
                logger.warning("model call abandoned after its deadline: the provider's clean-up did not finish "
                               "within %.1f s and goes on in the background", CLEANUP_GRACE_S)


class BoundedModel(Model):
    """A provider whose every call ends by ``timeout_s``; ``for_summaries`` is its twin capped for summaries.

    Configuration, token counting and statefulness are the wrapped provider's.
    """

    def __init__(self, inner: Model, timeout_s: float, summary_inner: Model | None = None,
                 purpose: str = "chat") -> None:
        self.inner = inner
        self.timeout_s = timeout_s
        #: what the calls are for, in the DEBUG line each call logs: ``chat`` or ``summary``
        self.purpose = purpose
        #: the same model with the summary's token cap (``SUMMARY_MAX_TOKENS``), same deadline
        self.for_summaries: Model = (BoundedModel(summary_inner, timeout_s, purpose="summary")
                                     if summary_inner is not None else self)

    @property
    def config(self) -> Any:
        """The provider's configuration (Strands reads ``model.config`` for the model id)."""
        return self.inner.get_config()

    @property
    def stateful(self) -> bool:
        return self.inner.stateful

    def update_config(self, **model_config: Any) -> None:
        self.inner.update_config(**model_config)

    def get_config(self) -> Any:
        return self.inner.get_config()

    async def count_tokens(self, *args: Any, **kwargs: Any) -> int:
        return await self.inner.count_tokens(*args, **kwargs)

    async def structured_output(self, output_model: Any, prompt: Messages, system_prompt: str | None = None,
                                **kwargs: Any) -> AsyncGenerator[dict[str, Any], None]:
        events = self.inner.structured_output(output_model, prompt, system_prompt, **kwargs)
        async for event in within(events, self.timeout_s):
            yield event

    async def stream(self, messages: Messages, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncGenerator[StreamEvent, None]:
        started = time.perf_counter()
        usage: dict[str, Any] = {}
        stop = None
        async for event in within(self.inner.stream(messages, tool_specs, system_prompt, **kwargs), self.timeout_s):
            if "metadata" in event:
                usage = dict(event["metadata"].get("usage") or {})
            elif "messageStop" in event:
                stop = event["messageStop"].get("stopReason")
            yield event
        # what a call cost, for tuning MEMORY_MAX_TOKENS / MAX_TOKENS (bench/local_conversation.py reads it)
        logger.debug(
            "model call | purpose=<%s> | prompt_tokens=<%s> | cached_tokens=<%s> | reply_tokens=<%s> | stop=<%s> | "
            "%.2f s", self.purpose, usage.get("inputTokens"), usage.get("cacheReadInputTokens", 0),
            usage.get("outputTokens"), stop, time.perf_counter() - started,
        )


def summary_model(model: Model) -> Model:
    """The model summaries are written with: the twin capped at ``SUMMARY_MAX_TOKENS`` when there is one."""
    return model.for_summaries if isinstance(model, BoundedModel) else model
