"""Long-term memory hooks: before the model answers, recall what this actor said in earlier sessions.

On ``BeforeInvocationEvent`` the hooks search the actor's long-term records
with the new user message and append the best few to the system prompt, each
with its session and date, bounded by ``LTM_TOP_K`` records, ``LTM_MIN_SCORE``
(calibrated, 0..1) and ``LTM_MAX_TOKENS``. Turns already in the loaded window
are left out (``window``: the (session, turn) pairs the session hooks loaded),
so the model never sees one exchange twice.

Order: register these hooks *after* the session ``MemoryHooks``
(``hooks=[memory_hooks, longterm_hooks, ...]``): Strands runs
``BeforeInvocationEvent`` callbacks in registration order, so the window is
loaded (and its turn numbers known) when ``window()`` is called.

The search never fails a turn: if the long-term store cannot answer, the turn
goes on without recalled records (a warning is logged, ``memories_used`` is 0).
``epoch`` is the actor's epoch read when the turn started; hand it to
``LongTermMemory.record_exchange`` (``record`` does), so a ``forget`` that lands
while this turn runs also refuses this turn's records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from strands.hooks import BeforeInvocationEvent, HookProvider, HookRegistry

from core.timing import timed
from longterm.base import LongTermMemory, Memory
from longterm.text import estimate_tokens, iso_time
from models.base import text_of

logger = logging.getLogger(__name__)

#: a recalled record is clipped to fit the budget only when at least this many tokens are left
MIN_CLIP_TOKENS = 24

MEMORY_HEADER = (
    "Long-term memory: what was said in earlier conversations with this user, retrieved for the new "
    "message (most relevant first; it may be outdated or unrelated, use it only if it helps):"
)


def window_turns(session_id: str, message_count: int, history_length: int) -> set[tuple[str, int]]:
    """The (session, turn) pairs of a loaded window: the newest ``history_length`` of ``message_count`` turns."""
    return {(session_id, n) for n in range(message_count - history_length + 1, message_count + 1) if n > 0}


def select(memories: Iterable[Memory], min_score: float, max_tokens: int) -> list[Memory]:
    """Records at or above ``min_score``, in order, while their lines fit in ``max_tokens``.

    A record that does not fit whole is clipped to what is left (if at least ``MIN_CLIP_TOKENS``),
    and nothing follows it.
    """
    chosen: list[Memory] = []
    left = max_tokens
    for memory in memories:
        if memory.score < min_score:
            continue
        cost = estimate_tokens(line(memory))
        if cost <= left:
            chosen.append(memory)
            left -= cost
            continue
        if left >= MIN_CLIP_TOKENS:
            overhead = estimate_tokens(line(_with_text(memory, "")))
            chosen.append(_with_text(memory, memory.text[: max(0, (left - overhead) * 4 - 1)] + "…"))
        break
    return chosen


def _with_text(memory: Memory, text: str) -> Memory:
    from dataclasses import replace

    return replace(memory, text=text)


def line(memory: Memory) -> str:
    """``- [2026-05-08, session trip] user: I am planning a trip to Oslo in May``."""
    where = f"session {memory.session_id}" if memory.session_id else "long-term record"
    return f"- [{iso_time(memory.created_at)[:10]}, {where}] {memory.role}: {memory.text}"


def with_memories(system_prompt: str | None, memories: list[Memory]) -> str:
    section = MEMORY_HEADER + "\n" + "\n".join(line(m) for m in memories)
    return f"{system_prompt}\n\n{section}" if system_prompt else section


class LongTermHooks(HookProvider):
    """Recall for one Agent invocation of one (actor, session). Build one per request."""

    def __init__(self, ltm: LongTermMemory, actor_id: str, session_id: str, *, top_k: int, min_score: float,
                 max_tokens: int, window: Callable[[], Iterable[tuple[str, int]]] | None = None) -> None:
        self.ltm = ltm
        self.actor_id = actor_id
        self.session_id = session_id
        self.top_k = top_k
        self.min_score = min_score
        self.max_tokens = max_tokens
        #: the (session, turn) pairs already in front of the model (called after the session hooks ran)
        self.window = window
        #: records injected into the system prompt (the response's ``memories_used``)
        self.memories_used = 0
        #: what was injected, for an ``explain`` report: record id, score, session, turn
        self.injected: list[dict[str, Any]] = []
        #: the actor's epoch when this turn started (None if the store could not be read)
        self.epoch: int | None = None

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(BeforeInvocationEvent, self.recall)

    def _ids(self) -> str:
        return f"actor_id=<{self.actor_id}> | session_id=<{self.session_id}>"

    def recall(self, event: BeforeInvocationEvent) -> None:
        started = time.perf_counter()
        query = "\n".join(text_of(m) for m in (event.messages or []) if m["role"] == "user").strip()
        try:
            self.epoch = self.ltm.epoch(self.actor_id)
            if not query:
                return
            exclude = frozenset(self.window()) if self.window is not None else frozenset()
            with timed("longterm_search"):
                found = self.ltm.search(self.actor_id, query, self.top_k, exclude)
        except Exception as e:  # recall is best effort: the turn goes on without it
            logger.warning("%s | long-term recall skipped: %s: %s", self._ids(), type(e).__name__, e)
            return
        chosen = select(found, self.min_score, self.max_tokens)
        if chosen:
            event.agent.system_prompt = with_memories(event.agent.system_prompt, chosen)
        self.memories_used = len(chosen)
        self.injected = [{"record_id": m.record_id, "score": round(m.score, 4), "session_id": m.session_id,
                          "turn": m.turn} for m in chosen]
        logger.debug("%s | recalled %d of %d long-term records in %.2f ms", self._ids(), len(chosen), len(found),
                     (time.perf_counter() - started) * 1e3)

    def record(self, turn: int, user: str, reply: str, generation: int, created_at: float | None = None) -> None:
        """Queue this turn's exchange for long-term memory, under the epoch read when the turn started."""
        self.ltm.record_exchange(self.actor_id, self.session_id, turn, user, reply,
                                 time.time() if created_at is None else created_at, generation, self.epoch)
