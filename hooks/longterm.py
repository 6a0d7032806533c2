"""Long-term memory hooks: before the model answers, recall what this actor said in earlier sessions.

On ``BeforeInvocationEvent`` the hooks search the actor's long-term records
with the new user message and append the best few to the system prompt, each
with its session and date, bounded by ``LTM_TOP_K`` records, ``LTM_MIN_SCORE``
(calibrated, 0..1) and ``LTM_MAX_TOKENS``. Turns already in the loaded window
are left out (the turn state's ``loaded_turns``), so the model never sees one
exchange twice.

Order: register these hooks *after* the session ``MemoryHooks``, with the same
``TurnState`` (``hooks=[memory_hooks, longterm_hooks, ...]``): Strands runs
``BeforeInvocationEvent`` callbacks in registration order, so the window is
loaded (and its turn numbers known) when ``recall`` runs.

The search never fails a turn: if the long-term store cannot answer, the turn
goes on without recalled records (a warning is logged, ``memories_used`` is 0).
``state.epoch`` is the actor's epoch read when the turn started; the pipeline hands
it to ``LongTermMemory.record_exchange``, so a ``forget`` that lands while this
turn runs also refuses this turn's records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from strands.hooks import BeforeInvocationEvent, HookProvider, HookRegistry

from core.timing import timed
from longterm.base import LongTermMemory, Memory
from longterm.lines import line
from longterm.text import estimate_tokens
from memory.turn import TurnState
from models.base import text_of

logger = logging.getLogger(__name__)

#: a recalled record is clipped to fit the budget only when at least this many tokens are left
MIN_CLIP_TOKENS = 24

MEMORY_HEADER = (
    "Long-term memory: what was said in earlier conversations with this user, retrieved for the new "
    "message (most relevant first; it may be outdated or unrelated, use it only if it helps):"
)


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
    return replace(memory, text=text)


def with_memories(system_prompt: str | None, memories: list[Memory]) -> str:
    section = MEMORY_HEADER + "\n" + "\n".join(line(m) for m in memories)
    return f"{system_prompt}\n\n{section}" if system_prompt else section


class LongTermHooks(HookProvider):
    """Recall for one Agent invocation of one turn (``state``: its actor and session). Build one per turn."""

    def __init__(self, ltm: LongTermMemory, state: TurnState, *, top_k: int, min_score: float,
                 max_tokens: int) -> None:
        self.ltm = ltm
        self.state = state
        self.top_k = top_k
        self.min_score = min_score
        self.max_tokens = max_tokens

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(BeforeInvocationEvent, self.recall)

    def recall(self, event: BeforeInvocationEvent) -> None:
        """Append the actor's best records for the new message to the system prompt (none already in the window)."""
        started, state = time.perf_counter(), self.state
        query = "\n".join(text_of(m) for m in (event.messages or []) if m["role"] == "user").strip()
        try:
            state.epoch = self.ltm.epoch(state.actor_id)
            if not query:
                return
            exclude = frozenset((state.session_id, n) for n in state.loaded_turns)
            with timed("longterm_search"):
                found = self.ltm.search(state.actor_id, query, self.top_k, exclude)
        except Exception as e:  # recall is best effort: the turn goes on without it
            logger.warning("%s | long-term recall skipped: %s: %s", state.ids(), type(e).__name__, e)
            return
        chosen = select(found, self.min_score, self.max_tokens)
        if chosen:
            event.agent.system_prompt = with_memories(event.agent.system_prompt, chosen)
        state.memories_used = len(chosen)
        state.injected = [{"record_id": m.record_id, "score": round(m.score, 4), "session_id": m.session_id,
                           "turn": m.turn, "role": m.role, "text": m.text} for m in chosen]
        logger.debug("%s | recalled %d of %d long-term records in %.2f ms", state.ids(), len(chosen), len(found),
                     (time.perf_counter() - started) * 1e3)
