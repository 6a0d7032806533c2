"""The rolling summary's fold: after a turn is stored, move the session's summary ahead when a coming request needs it.

The turns that fell out of the k-turn window are kept as a stored running summary, which
``MemoryHooks`` puts in the system prompt ahead of the window. It is moved ahead in batches
(``SUMMARY_BATCH`` turns per summariser call), only when a coming request would otherwise
have a gap between the summary and the window. The turn pipeline calls ``after_turn`` once the
reply is out; given a ``FoldQueue`` (the server's) the fold runs on a background thread and one
turn early, so the next request, which may start before it ends, still has no gap; without one
(hook-level use) it runs inline.

This is the store-facing half of the summariser: it reads the turns to fold (from the turn's
loaded window when it holds them, else from the store) and writes the summary, conditional on
the turn's generation; ``models.summarizer`` makes the one model call in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from core.settings import default_summary_batch
from core.telemetry import in_this_context, memory_step
from core.timing import timed
from hooks.folds import FoldQueue
from hooks.memory import newest_within
from memory.base import SessionStore, Summary, Turn
from memory.turn import TurnState
from models.summarizer import Summarizer

logger = logging.getLogger(__name__)


def numbered(turns: Sequence[Turn], last: int, first: int, target: int) -> list[Turn] | None:
    """Turns ``first``..``target`` of ``turns``, the session's turns through turn ``last``; None unless all are there."""
    base = last - len(turns) + 1
    if first < base or target > last or first > target:
        return None
    return list(turns[first - base: target - base + 1])


class RollingSummary:
    """Folds for every turn of one process (thread-safe: it keeps no per-turn state of its own)."""

    def __init__(self, store: SessionStore, summarizer: Summarizer, k: int, batch: int | None = None,
                 max_tokens: int | None = None, folds: FoldQueue | None = None) -> None:
        self.store = store
        self.summarizer = summarizer
        self.k = k
        #: turns the summary moves ahead per summariser call (``SUMMARY_BATCH``, 1..k)
        self.batch = default_summary_batch(k) if batch is None else batch
        if not 1 <= self.batch <= k:
            raise ValueError(f"batch={self.batch} must be between 1 and k={k}")
        #: the window's token budget (``MEMORY_MAX_TOKENS``): the next request shows what fits it
        self.max_tokens = max_tokens
        #: set: folds run there, after the reply (the server's); None: inline
        self.folds = folds

    def next_window(self, state: TurnState) -> tuple[list[Turn], int]:
        """The turns through the one just stored that are known here, and how many the next request will show.

        The next request loads turns n-k+1..n and shows the newest that fit ``max_tokens``: the
        rule ``MemoryHooks`` applies, on the window loaded before this turn plus this turn. The
        known turns are returned only when they are the session's newest (a full window, or the
        whole session), so a fold can read them instead of the store.
        """
        assert state.message_count is not None
        newest: Turn = [ConversationalMessage(state.user_text, MessageRole.USER),
                        ConversationalMessage(state.reply, MessageRole.ASSISTANT)]
        known = [*state.window, newest]
        if len(state.window) not in (self.k, state.message_count - 1):
            known = []  # another writer added turns meanwhile: the numbering of the loaded ones is unknown
        if not known and self.max_tokens is not None:
            return known, newest_within([newest], self.max_tokens)  # older turns' sizes unknown: assume none fits
        if not known:
            return known, min(self.k, state.message_count)
        return known, newest_within(known[-self.k:], self.max_tokens)

    def after_turn(self, state: TurnState) -> None:
        """Move the summary ahead when a coming request would otherwise miss turns. Best effort.

        Most turns need nothing: the summary was read before the turn (a full or budget-cut
        window) and still reaches the window that matters. With a ``FoldQueue`` that window is
        the request after next's (k-1 of the turns stored so far, or fewer under the budget),
        so the next request, which may begin while the fold runs, finds the summary it needs
        already stored. (A next turn long enough to push more turns out of the token budget can
        still meet a gap, closed by the fold after it.) The turn is already stored: if the
        summariser or the store fails, the summary keeps its old extent and a later turn folds.
        """
        if not state.stored:
            return  # nothing new stored (skipped, refused, or a replay, folded when first stored)
        assert state.message_count is not None
        known, shown = self.next_window(state)
        if self.folds is not None:
            shown = min(shown, self.k - 1)  # the request after next: one turn more leaves the window
        if state.message_count <= shown:
            return  # every turn of the session is in the window that matters
        if state.summary_read and state.summary is not None \
                and state.summary.through_turn >= state.message_count - shown:
            return  # the summary read before this turn still reaches the window: no gap
        if self.folds is None:
            self.fold(state, known, shown, state.summary if state.summary_read else None,
                      fresh=not state.summary_read)
        elif not self.folds.submit((state.actor_id, state.session_id),
                                   in_this_context(lambda: self.fold(state, known, shown, None, fresh=True))):
            logger.debug("%s | rolling summary fold not queued (shutting down or full); a later turn folds",
                         state.ids())

    @memory_step("summary_fold", lambda self: {}, backend=lambda self: self.store.name)
    def fold(self, state: TurnState, known: list[Turn], shown: int, current: Summary | None, *,
             fresh: bool) -> None:
        """Fold the turns a window of the newest ``shown`` would leave out of ``current`` (re-read when ``fresh``)."""
        n = state.message_count
        assert n is not None
        try:
            if fresh:  # not read before the turn, or queued: an earlier fold of this session may have moved it
                with timed("store_read"):
                    current = self.store.get_summary(state.actor_id, state.session_id)
            with timed("summary"):
                summary = self.moved_ahead(state, current, n, known, shown)
                if summary is not None and not self.store.put_summary(state.actor_id, state.session_id, summary,
                                                                      generation=state.generation):
                    logger.debug("%s | rolling summary through turn %d not stored: the session was cleared or "
                                 "expired", state.ids(), summary.through_turn)
        except Exception as e:  # best effort: the stored turn must not be lost to a summary failure
            logger.warning("%s | rolling summary not updated after turn %d (a later turn retries): %s: %s",
                           state.ids(), n, type(e).__name__, e)

    def moved_ahead(self, state: TurnState, current: Summary | None, n: int, recent: Sequence[Turn],
                    shown: int) -> Summary | None:
        """The summary moved ahead by ``batch`` turns after turn ``n``; None while it is not needed yet.

        The next request shows turns n-shown+1..n, so there is a gap only if the summary ends
        before turn n-shown. Only then is it extended, in one bounded call over ``current`` and
        the turns after it, through turn n-shown+``batch``-1 (at most n): ``batch`` turns when it
        was up to date, some still in the window (shown twice, which is harmless), so the next
        ``batch``-1 turns need no call and a long session pays one call per ``batch`` turns.
        The turns to fold come from ``recent`` (the loaded window plus this turn) when it holds
        them all, as it does whenever the summary was up to date; otherwise from the store.
        """
        through = current.through_turn if current is not None else 0
        if through >= n - shown:
            return None  # no gap at the next request
        target = min(n - shown + self.batch - 1, n)
        first = max(through + 1, target - self.summarizer.max_fold_turns + 1)
        new_turns = numbered(recent, n, first, target) if recent else None
        if new_turns is None:
            turns = self.store.get_last_k_turns(state.actor_id, state.session_id, n - first + 1)
            first = max(first, n - len(turns) + 1)  # turns[i] is turn n - len(turns) + 1 + i
            new_turns = numbered(turns, n, first, target) or []
        if not new_turns:
            return None
        started = time.perf_counter()
        text, skipped = self.summarizer.fold_turns(current, new_turns, first, target)
        if skipped:
            logger.warning("%s | rolling summary skips %d turns", state.ids(), skipped)
        logger.debug("%s | folded turns %d-%d into the rolling summary in %.1f ms", state.ids(), through + 1, target,
                     (time.perf_counter() - started) * 1e3)
        return Summary(text, target)
