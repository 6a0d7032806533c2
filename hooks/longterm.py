"""Long-term memory hooks: before the model answers, recall what this actor said in earlier sessions.

On ``BeforeInvocationEvent`` the hooks search the actor's long-term records
with the new user message and hand the best few to the model as quoted items
of the memory block ahead of the new message (``hooks/framing.py``; never the
system prompt), each with who said it, its date and session, bounded by
``LTM_TOP_K`` records, ``LTM_MIN_SCORE`` (calibrated, 0..1) and ``LTM_MAX_TOKENS``. Turns already in the loaded window
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

from core.telemetry import capture_content, memory_step, record_injected
from core.timing import timed
from hooks.framing import place, user_words
from longterm.base import LongTermMemory, Memory
from longterm.lines import line
from longterm.text import estimate_tokens
from memory.turn import TurnState

logger = logging.getLogger(__name__)

#: a recalled record is clipped to fit the budget only when at least this many tokens are left
MIN_CLIP_TOKENS = 24


def select(memories: Iterable[Memory], min_score: float, max_tokens: int) -> list[Memory]:
    """Records at or above ``min_score``, in order, while their quoted items fit in ``max_tokens``.

    A record that does not fit whole is clipped to what is left (if at least ``MIN_CLIP_TOKENS``),
    and nothing follows it.
    """
    return [memory for memory, _ in quoted(memories, min_score, max_tokens)]


def quoted(memories: Iterable[Memory], min_score: float, max_tokens: int) -> list[tuple[Memory, str]]:
    """``select``'s records, each with its quoted item: the one its tokens were counted on, placed as it is
    (quoting each record again to place it doubled the cost of this step)."""
    chosen: list[tuple[Memory, str]] = []
    left = max_tokens
    for memory in memories:
        if memory.score < min_score:
            continue
        item = line(memory)
        cost = estimate_tokens(item)
        if cost <= left:
            chosen.append((memory, item))
            left -= cost
            continue
        if left >= MIN_CLIP_TOKENS:
            overhead = estimate_tokens(line(_with_text(memory, "")))
            clipped = _with_text(memory, memory.text[: max(0, (left - overhead) * 4 - 1)] + "…")
            chosen.append((clipped, line(clipped)))
        break
    return chosen


def _with_text(memory: Memory, text: str) -> Memory:
    return replace(memory, text=text)


def recall_attributes(state: TurnState) -> dict[str, Any]:
    """What the recall span says: records considered and injected, their scores and tokens, why none (if so)."""
    attributes: dict[str, Any] = {
        "memory.records_considered": state.recall_considered, "memory.records_injected": state.memories_used,
        "memory.record_scores": [float(i["score"]) for i in state.injected], "memory.injected_tokens":
        state.recall_tokens, "memory.skipped": state.recall_skipped}
    if capture_content():  # OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: the query and the records' text
        attributes["memory.query"] = state.message
        attributes["memory.records"] = list(state.recall_texts)
    return attributes


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

    @memory_step("recall", lambda self: recall_attributes(self.state), backend=lambda self: self.ltm.name)
    def recall(self, event: BeforeInvocationEvent) -> None:
        """Quote the actor's best records for the new message in the memory block (none already in the window)."""
        started, state = time.perf_counter(), self.state
        query = user_words(event.messages)
        try:
            state.epoch = self.ltm.epoch(state.actor_id)
            if not query:
                state.recall_skipped = "no text to search with"
                return
            exclude = frozenset((state.session_id, n) for n in state.loaded_turns)
            with timed("longterm_search"):
                found = self.ltm.search(state.actor_id, query, self.top_k, exclude, self.min_score)
        except Exception as e:  # recall is best effort: the turn goes on without it
            logger.warning("%s | long-term recall skipped: %s: %s", state.ids(), type(e).__name__, e)
            state.recall_skipped = f"long-term store failed: {type(e).__name__}"
            return
        picked = quoted(found, self.min_score, self.max_tokens)
        chosen = [memory for memory, _ in picked]
        state.recalled = [item for _, item in picked]
        state.recall_considered = len(found)
        state.recall_tokens = sum(estimate_tokens(item) for item in state.recalled)
        state.recall_texts = [m.text for m in chosen] if capture_content() else []
        record_injected(len(chosen))
        if not chosen:
            # the search returns only records of at least LTM_MIN_SCORE: none back means none was relevant enough
            state.recall_skipped = ("none relevant enough (LTM_MIN_SCORE)" if found or self.min_score > 0
                                    else "nothing found")
        if chosen:
            place(event, state)
        state.memories_used = len(chosen)
        state.injected = [{"record_id": m.record_id, "score": round(m.score, 4), "session_id": m.session_id,
                           "turn": m.turn, "role": m.role, "text": m.text} for m in chosen]
        logger.debug("%s | recalled %d of %d long-term records in %.2f ms", state.ids(), len(chosen), len(found),
                     (time.perf_counter() - started) * 1e3)
