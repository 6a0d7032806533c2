"""Memory hooks: load the last k turns before the agent answers, store the new turn after.

The window is bounded twice: at most k turns (``MEMORY_K``) and, newest first, only the
whole turns whose estimated tokens fit ``MEMORY_MAX_TOKENS``; long replies push the
oldest turns of the window out early, and the rolling summary covers them.

With a summariser attached (``ROLLING_SUMMARY``, on by default) the turns that
fell out of the k-turn window are kept as a stored running summary: it is
given to the model in the system prompt ahead of the last k turns (so the
history itself still starts with ``user`` and alternates). It is moved ahead
in batches (``SUMMARY_BATCH`` turns per summariser call), only when a coming
request would otherwise have a gap between the summary and the window. Given a
``FoldQueue`` (the server's), the fold runs after the reply on a background
thread and one turn early, so the next request, which may start before it
ends, still has no gap; without one (hook-level use) it runs inline.

Only the new exchange (the user's message and the final assistant text) is
written back, as one event: replayed history is never stored twice, and tool
calls never reach the store, so the history replayed next time always
alternates user / assistant and has no ``toolUse`` without its result.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from strands.hooks import AfterInvocationEvent, BeforeInvocationEvent, HookProvider, HookRegistry
from strands.types.content import Messages

from core.errors import AlreadyStored
from core.settings import default_summary_batch
from core.timing import timed
from memory.base import SessionStore, StoredReply, Summary, Turn
from models.base import SUMMARY_HEADING, estimate_tokens, reply_text, text_of

if TYPE_CHECKING:
    from hooks.folds import FoldQueue
    from models.summarizer import Summarizer

logger = logging.getLogger(__name__)


def turns_to_messages(turns: list[Turn]) -> tuple[Messages, int]:
    """Stored turns as Strands messages that Bedrock Converse accepts.

    Each kept turn becomes one user message and one assistant message, so the
    history starts with ``user``, alternates, and ends with ``assistant``
    (the new user message follows it). A turn without both a user and an
    assistant text (a foreign or damaged record) is left out, with a warning.
    Returns the messages and the number of turns kept.
    """
    messages: Messages = []
    kept = 0
    for turn in turns:
        user = "\n".join(m.text for m in turn if m.role == MessageRole.USER and m.text)
        assistant = "\n".join(m.text for m in turn if m.role == MessageRole.ASSISTANT and m.text)
        if not user or not assistant:
            logger.warning("skipping a stored turn without both a user and an assistant message")
            continue
        messages.append({"role": "user", "content": [{"text": user}]})
        messages.append({"role": "assistant", "content": [{"text": assistant}]})
        kept += 1
    return messages, kept


def has_exchange(turn: Turn) -> bool:
    """Whether ``turns_to_messages`` keeps this turn: it has both a user and an assistant text."""
    return any(m.role == MessageRole.USER and m.text for m in turn) and \
        any(m.role == MessageRole.ASSISTANT and m.text for m in turn)


def turn_tokens(turn: Turn) -> int:
    """Estimated tokens of one stored turn as the model gets it (its user and assistant message)."""
    return sum(estimate_tokens(message.text) for message in turn)


def newest_within(turns: list[Turn], max_tokens: int | None) -> int:
    """How many of the newest ``turns`` fit ``max_tokens`` whole (all of them when there is no budget)."""
    if max_tokens is None:
        return len(turns)
    used = 0
    for kept, turn in enumerate(reversed(turns)):
        used += turn_tokens(turn)
        if used > max_tokens:
            return kept
    return len(turns)


def with_summary(system_prompt: str | None, summary: Summary) -> str:
    """The system prompt with the rolling summary; it runs ahead in batches, so its last turns may be in the history too."""
    section = (
        f"{SUMMARY_HEADING} (turns 1-{summary.through_turn}; "
        f"the most recent of them may also appear below as messages):\n{summary.text}"
    )
    return f"{system_prompt}\n\n{section}" if system_prompt else section


class MemoryHooks(HookProvider):
    """Binds one Agent invocation to one (actor, session) of a store. Build one per request."""

    def __init__(self, store: SessionStore, actor_id: str, session_id: str, k: int,
                 summarizer: Summarizer | None = None, batch: int | None = None,
                 max_tokens: int | None = None, idempotency_key: str | None = None,
                 folds: FoldQueue | None = None) -> None:
        self.store = store
        self.actor_id = actor_id
        self.session_id = session_id
        self.k = k
        #: estimated tokens the window's turns may take (``MEMORY_MAX_TOKENS``); None: only k bounds it
        self.max_tokens = max_tokens
        #: set: keep a rolling summary of the turns older than the window (``ROLLING_SUMMARY``)
        self.summarizer = summarizer
        #: turns the rolling summary moves ahead per summariser call (``SUMMARY_BATCH``, 1..k)
        self.batch = default_summary_batch(k) if batch is None else batch
        if not 1 <= self.batch <= k:
            raise ValueError(f"batch={self.batch} must be between 1 and k={k}")
        #: set: folds run there, after the reply (the server's); None: inline, before ``save_turn`` returns
        self.folds = folds
        #: turns put in front of the new message (set by ``load_history``)
        self.history_length = 0
        #: turns of the loaded window left out because they did not fit ``max_tokens``
        self.dropped_for_budget = 0
        #: the session's USER message count after this turn was stored (set by ``save_turn``)
        self.message_count: int | None = None
        #: set by a tool (clear_session) when this exchange must not be written back
        self.skip_store = False
        #: recorded with the stored exchange, so a retry of this request stores nothing new
        self.idempotency_key = idempotency_key
        #: the session's generation when the window was loaded: every write here is conditional on it
        self.generation: int | None = None
        #: the session's USER message count when the window was loaded (the number of its newest turn)
        self.loaded_count = 0
        #: set when another request had already stored this idempotency key: what it stored (nothing new was)
        self.replayed: StoredReply | None = None
        self._user_text: str | None = None
        self._window: list[Turn] = []
        self._summary: Summary | None = None
        self._summary_read = False

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(BeforeInvocationEvent, self.load_history)
        registry.add_callback(AfterInvocationEvent, self.save_turn)

    def _ids(self) -> str:
        return f"actor_id=<{self.actor_id}> | session_id=<{self.session_id}>"

    def load_history(self, event: BeforeInvocationEvent) -> None:
        started = time.perf_counter()
        self._user_text = "\n".join(text_of(m) for m in (event.messages or []) if m["role"] == "user").strip()
        with timed("store_read"):
            window = self.store.load_window(self.actor_id, self.session_id, self.k)
        turns = self._window = window.turns
        self.generation, self.loaded_count = window.generation, window.message_count
        shown = newest_within(turns, self.max_tokens)
        self.dropped_for_budget = len(turns) - shown
        history, self.history_length = turns_to_messages(turns[len(turns) - shown:])
        event.agent.messages[0:0] = history
        if self.summarizer is not None and (len(turns) >= self.k or self.dropped_for_budget):
            # only a full (or budget-cut) window can have turns before it: shorter sessions never pay for this
            # read, and none where the store read the summary with the window (SQLite)
            if window.summary_read:
                self._summary = window.summary
            else:
                with timed("store_read"):
                    self._summary = self.store.get_summary(self.actor_id, self.session_id)
            self._summary_read = True
            if self._summary is not None:
                event.agent.system_prompt = with_summary(event.agent.system_prompt, self._summary)
        logger.debug(
            "%s | loaded %d turns (%d left out for MEMORY_MAX_TOKENS) in %.2f ms", self._ids(), self.history_length,
            self.dropped_for_budget, (time.perf_counter() - started) * 1e3,
        )

    def save_turn(self, event: AfterInvocationEvent) -> None:
        if event.result is None:
            return  # the invocation failed: nothing to store, the session stays as it was
        reply = reply_text(event.result)
        if not self.skip_store and (not self._user_text or not reply):
            logger.warning("%s | nothing stored: empty user message or empty reply", self._ids())
            return
        self.store_exchange(self._user_text or "", reply)

    def store_exchange(self, user_text: str, reply: str) -> int | None:
        """Store one exchange, whole or cut at ``MAX_TOKENS``, and move the rolling summary on after it.

        A reply cut at the token limit is stored too (it is what the user got), so it is a turn
        like any other: the summary must move past it as well, or it would never catch up.
        Returns the session's message count (None when this exchange is not stored).
        """
        if self.skip_store:
            logger.debug("%s | this exchange is not stored (skip_store)", self._ids())
            return None
        with timed("store_write"):
            self.write_exchange(user_text, reply)
        if self.summarizer is not None and self.replayed is None:
            self.update_summary(user_text, reply)
        return self.message_count

    def write_exchange(self, user_text: str, reply: str) -> int:
        """Write one exchange as one event; remember and return the session's message count.

        Conditional on the loaded generation (``SessionChanged`` if the session was cleared since,
        nothing stored). If the idempotency key was stored already, nothing is stored and
        ``replayed`` is set: the count returned is the stored turn's.
        """
        started = time.perf_counter()
        try:
            self.message_count = self.store.add_turns(
                self.actor_id,
                self.session_id,
                [ConversationalMessage(user_text, MessageRole.USER),
                 ConversationalMessage(reply, MessageRole.ASSISTANT)],
                generation=self.generation,
                idempotency_key=self.idempotency_key,
            )
        except AlreadyStored as e:  # a concurrent retry of this request stored it first: answer with that
            self.replayed = StoredReply(e.message_count, e.reply)
            self.message_count = e.message_count
            logger.debug("%s | idempotency key already stored as turn %d; nothing stored",
                         self._ids(), e.message_count)
            return self.message_count
        logger.debug(
            "%s | stored turn %d in %.2f ms", self._ids(), self.message_count, (time.perf_counter() - started) * 1e3
        )
        return self.message_count

    @property
    def loaded_turns(self) -> list[int]:
        """The numbers of the stored turns given to the model, oldest first (the ``explain`` report).

        The window's turns are the session's newest, so the last is turn ``loaded_count``; turns
        ``turns_to_messages`` leaves out are not counted, and of the rest the newest
        ``history_length`` are the ones in front of the model.
        """
        first = self.loaded_count - len(self._window) + 1
        given = [first + i for i, turn in enumerate(self._window) if has_exchange(turn)]
        return given[len(given) - self.history_length:] if self.history_length else []

    @property
    def summary_in_prompt(self) -> Summary | None:
        """The rolling summary put in this turn's system prompt, if one was."""
        return self._summary

    def next_window(self, user_text: str, reply: str) -> tuple[list[Turn], int]:
        """The turns through the one just stored that are known here, and how many the next request will show.

        The next request loads turns n-k+1..n and shows the newest that fit ``max_tokens``: the
        same rule ``load_history`` applies, on the window loaded before this turn plus this turn.
        The known turns are returned only when they are the session's newest (a full window, or
        the whole session), so a fold can read them instead of the store.
        """
        assert self.message_count is not None
        newest: Turn = [ConversationalMessage(user_text, MessageRole.USER),
                        ConversationalMessage(reply, MessageRole.ASSISTANT)]
        known = [*self._window, newest]
        if len(self._window) not in (self.k, self.message_count - 1):
            known = []  # another writer added turns meanwhile: the numbering of the loaded ones is unknown
        if not known and self.max_tokens is not None:
            return known, newest_within([newest], self.max_tokens)  # the older turns' sizes are unknown: assume none fits
        if not known:
            return known, min(self.k, self.message_count)
        return known, newest_within(known[-self.k:], self.max_tokens)

    def update_summary(self, user_text: str, reply: str) -> None:
        """Move the rolling summary ahead when a coming request would otherwise miss turns. Best effort.

        The next request shows the newest turns that fit both k and ``max_tokens``
        (``next_window``); the model misses something only if the summary ends before the
        oldest of them. Most turns need nothing: the summary was read before the turn (a full
        or budget-cut window) and still reaches that far. When it does not, one summariser
        call folds the next ``batch`` turns (see ``Summarizer.fold``). The turn is already
        stored: if the summariser (or the store) fails, the request still succeeds, the
        summary keeps its old ``through_turn``, the gap remains, and a later turn folds the
        missed turns too.

        With a ``FoldQueue`` the call is queued and made after the reply, for the request
        after next: its window (k-1 of the turns stored so far, or fewer under the budget) is
        what the summary must reach, so the next request, which may begin while the fold
        runs, finds the summary it needs already stored. (A next turn long enough to push more
        turns out of the token budget can still meet a gap, closed by the fold after it.)
        """
        assert self.summarizer is not None
        if self.message_count is None:
            return
        known, shown = self.next_window(user_text, reply)
        if self.folds is not None:
            shown = min(shown, self.k - 1)  # the request after next: one turn more leaves the window
        if self.message_count <= shown:
            return  # every turn of the session is in the window that matters
        if self._summary_read and self._summary is not None \
                and self._summary.through_turn >= self.message_count - shown:
            return  # the summary read before this turn still reaches the window: no gap
        if self.folds is None:
            self.fold(known, shown, self._summary if self._summary_read else None, fresh=not self._summary_read)
        elif not self.folds.submit((self.actor_id, self.session_id), lambda: self.fold(known, shown, None, fresh=True)):
            logger.debug("%s | rolling summary fold not queued (shutting down or full); a later turn folds",
                         self._ids())

    def fold(self, known: list[Turn], shown: int, current: Summary | None, *, fresh: bool) -> None:
        """Fold the turns a window of the newest ``shown`` would leave out of ``current`` (re-read when ``fresh``)."""
        assert self.summarizer is not None and self.message_count is not None
        try:
            if fresh:  # not read before the turn, or queued: an earlier fold of this session may have moved it
                with timed("store_read"):
                    current = self.store.get_summary(self.actor_id, self.session_id)
            if current is not None and current.through_turn >= self.message_count - shown:
                return  # the window starts right after (or inside) the summary: no gap
            with timed("summary"):
                summary = self.summarizer.fold(self.store, self.actor_id, self.session_id, current,
                                               self.message_count, self.k, self.batch, known, shown=shown)
                if summary is not None and not self.store.put_summary(self.actor_id, self.session_id, summary,
                                                                      generation=self.generation):
                    logger.debug("%s | rolling summary through turn %d not stored: the session was cleared or expired",
                                 self._ids(), summary.through_turn)
        except Exception as e:  # best effort: the stored turn must not be lost to a summary failure
            logger.warning(
                "%s | rolling summary not updated after turn %d (a later turn retries): %s: %s",
                self._ids(), self.message_count, type(e).__name__, e,
            )
