"""The one summariser, used by the ``summarize_session`` tool and action and by the rolling summary.

Every summary is one separate, tool-less model call (the model's own stream,
read directly: no Strands ``Agent``, no tools, no memory hooks, so nothing of
it is stored) over a transcript whose size is bounded however long the session is:

- each message is clipped to ``message_chars``;
- the transcript keeps the newest turns that fit ``transcript_chars``; the
  older part is represented by the stored rolling summary where there is one;
- the summary the model returns is clipped to ``summary_chars``, and the model is
  asked for at most ``SUMMARY_MAX_TOKENS`` (its ``BoundedModel`` twin): a summary cut
  there is kept, marked with a closing "…", never replaced by an error.

So the cost of a summary call does not grow with the session, and a model
that echoes its input (``MODEL_PROVIDER=echo``) cannot make the stored summary
grow either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from bedrock_agentcore.memory.constants import MessageRole
from strands.models import Model

from core.settings import Settings
from memory.base import SessionStore, Summary, Turn, group_turns
from models.base import BYTES_PER_TOKEN, run_coroutine, stream_text
from models.bounded import summary_model

logger = logging.getLogger(__name__)

SUMMARY_SYSTEM_PROMPT = (
    "You summarise conversations between a user and an assistant. Keep every fact the user stated "
    "(names, numbers, dates, preferences, decisions) and any open question; drop greetings and small talk. "
    "Write at most 200 words of plain sentences. Reply with the summary only."
)

EMPTY_SESSION_SUMMARY = "There is nothing to summarise: this conversation has no stored messages."

TRANSCRIPT_CHARS = 16_000
MESSAGE_CHARS = 2_000
SUMMARY_CHARS = 4_000
#: at most this many turns are read for one fold of the rolling summary (normally SUMMARY_BATCH turns)
MAX_FOLD_TURNS = 50
#: a fold of many turns clips each message to its share of the transcript, but never below this
MIN_MESSAGE_CHARS = 200
#: the mark a summary cut at SUMMARY_MAX_TOKENS ends with
CUT_MARK = "…"


class SummaryError(Exception):
    """The model gave no usable summary."""


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked when cut."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…"


class Summarizer:
    """Summaries with the configured model, within fixed size bounds. One per process; thread-safe."""

    def __init__(self, model: Model, *, transcript_chars: int = TRANSCRIPT_CHARS,
                 message_chars: int = MESSAGE_CHARS, summary_chars: int = SUMMARY_CHARS,
                 max_fold_turns: int = MAX_FOLD_TURNS) -> None:
        self.model = summary_model(model)
        self.transcript_chars = transcript_chars
        self.message_chars = message_chars
        self.summary_chars = summary_chars
        self.max_fold_turns = max_fold_turns

    @classmethod
    def for_settings(cls, model: Model, settings: Settings) -> Summarizer:
        """A summariser whose transcripts fit the model: about ``MEMORY_MAX_TOKENS`` + ``SUMMARY_MAX_TOKENS``.

        That is what a chat prompt may hold (history plus rolling summary), so a summary call fits
        the model's context wherever a turn does; at most ``TRANSCRIPT_CHARS``. Unresolved settings
        (no ``MEMORY_MAX_TOKENS`` yet) keep the fixed bounds.
        """
        if settings.memory_max_tokens is None:
            return cls(model)
        tokens = settings.memory_max_tokens + (settings.summary_max_tokens or 0)
        # 10 % below the estimate's own rate: the transcript adds "[turn n]" / "User:" framing
        transcript = max(2_000, min(TRANSCRIPT_CHARS, int(tokens * BYTES_PER_TOKEN * 0.9)))
        return cls(model, transcript_chars=transcript, message_chars=min(MESSAGE_CHARS, transcript // 2),
                   summary_chars=min(SUMMARY_CHARS, transcript // 3))

    # -- the model call ------------------------------------------------------------------------

    def complete(self, prompt: str) -> str:
        """One tool-less model call; the clipped summary text. Model errors propagate unchanged.

        The model's own stream, read directly (``models.base.stream_text``): no Strands ``Agent``,
        so nothing of the call is stored and none of an agent invocation's per-event cost is paid
        for a reply that is only kept as text (a summary streams hundreds of deltas). No Strands
        retries either: its default backs off for up to a minute on throttling, which a
        best-effort rolling summary must not add; the model client's own retries (botocore's, for
        Bedrock) still apply, and a failed fold is retried by a later turn. A summary cut at the
        model's token cap (stop reason ``max_tokens``) is still a summary: its text is kept,
        ending in ``CUT_MARK``.
        """
        text, stop = run_coroutine(lambda: stream_text(self.model, prompt, SUMMARY_SYSTEM_PROMPT))
        text = text.strip()
        cut = stop == "max_tokens"
        if not text:
            raise SummaryError("the model returned an empty summary" + (" (it reached its token cap first)" if cut else ""))
        if not cut:
            return clip(text, self.summary_chars)
        text = clip(text, self.summary_chars - len(CUT_MARK))
        logger.debug("summary cut at the model's token cap; kept %d characters", len(text))
        return text if text.endswith(CUT_MARK) else text + CUT_MARK

    # -- transcripts ---------------------------------------------------------------------------

    def render_turn(self, number: int, turn: Turn, message_chars: int | None = None) -> str:
        lines = [f"[turn {number}]"]
        for message in turn:
            who = {MessageRole.USER: "User", MessageRole.ASSISTANT: "Assistant"}.get(message.role, "Other")
            lines.append(f"{who}: {clip(message.text, message_chars or self.message_chars)}")
        return "\n".join(lines)

    def newest_that_fit(self, turns: Sequence[Turn], first_number: int, budget: int,
                        message_chars: int | None = None) -> tuple[list[str], int]:
        """Rendered turns, newest kept, within ``budget`` characters; and how many older ones were left out."""
        kept: list[str] = []
        used = 0
        for index in range(len(turns) - 1, -1, -1):
            block = self.render_turn(first_number + index, turns[index], message_chars)
            if kept and used + len(block) + 2 > budget:
                return kept[::-1], index + 1
            kept.append(block)
            used += len(block) + 2
        return kept[::-1], 0

    # -- what the tool, the action and the rolling summary call ------------------------------

    def summarize_session(self, store: SessionStore, actor_id: str, session_id: str) -> str:
        """A summary of the whole stored session; says so, without a model call, when it is empty."""
        events = store.list_events(actor_id, session_id)
        turns = group_turns([m for event in events for m in event.messages])
        if not turns:
            return EMPTY_SESSION_SUMMARY
        started = time.perf_counter()
        blocks, omitted = self.newest_that_fit(turns, 1, self.transcript_chars)
        parts = [f"Summarise this conversation ({len(turns)} turns)."]
        if omitted:
            # too long to send whole: the stored rolling summary stands in for the oldest turns
            summary = store.get_summary(actor_id, session_id)
            if summary is not None and summary.through_turn > 0:
                start = min(summary.through_turn, len(turns))
                head = clip(summary.text, self.summary_chars)
                parts.append(f"Summary of turns 1-{summary.through_turn}:\n{head}")
                blocks, omitted = self.newest_that_fit(turns[start:], start + 1,
                                                       self.transcript_chars - len(head))
                omitted += start
                if omitted > start:
                    parts.append(f"[turns {start + 1}-{omitted} are left out: too long to include]")
            else:
                parts.append(f"[turns 1-{omitted} are left out: too long to include]")
        parts.append("Conversation:\n" + "\n\n".join(blocks))
        text = self.complete("\n\n".join(parts))
        logger.debug(
            "actor_id=<%s> | session_id=<%s> | summarised %d turns (verbatim from turn %d) in %.1f ms",
            actor_id, session_id, len(turns), omitted + 1, (time.perf_counter() - started) * 1e3,
        )
        return text

    def fold(self, store: SessionStore, actor_id: str, session_id: str, current: Summary | None,
             message_count: int, k: int, batch: int = 1, recent: Sequence[Turn] = (),
             shown: int | None = None) -> Summary | None:
        """The rolling summary moved ahead by ``batch`` turns; None while it is not needed yet.

        Called after turn ``message_count`` (n) was stored: the next request shows the
        newest ``shown`` turns (k, or fewer when ``MEMORY_MAX_TOKENS`` leaves out older
        ones), n-shown+1..n, so the model's knowledge has a gap only if the summary ends
        before turn n-shown. Only then is it extended, in one bounded call over ``current``
        and the turns after it, through turn n-shown+``batch``-1 (at most n): that is
        ``batch`` turns when it was up to date, some of them still in the window (shown
        twice, which is harmless), so the next ``batch``-1 turns need no call and a long
        session pays one call per ``batch`` turns. ``batch`` is 1..k; 1 folds each turn as
        it leaves the window.

        ``recent`` is the session's newest turns through turn n as the hooks know them (the
        window loaded before this turn plus this turn): the turns to fold are read from it
        when it holds them all, as it does whenever the summary was up to date; otherwise
        (a missed fold, a summary that starts late) from the store.
        """
        shown = k if shown is None else shown
        through = current.through_turn if current is not None else 0
        if through >= message_count - shown:
            return None  # no gap at the next request
        if not 1 <= batch <= k:
            raise ValueError(f"batch={batch} must be between 1 and k={k}")
        target = min(message_count - shown + batch - 1, message_count)
        first = max(through + 1, target - self.max_fold_turns + 1)
        new_turns = numbered(recent, message_count, first, target) if recent else None
        if new_turns is None:
            turns = store.get_last_k_turns(actor_id, session_id, message_count - first + 1)
            base = message_count - len(turns) + 1  # turns[i] is turn base + i
            first = max(first, base)
            new_turns = numbered(turns, message_count, first, target) or []
        if not new_turns:
            return None
        started = time.perf_counter()
        previous = clip(current.text, self.summary_chars) if current is not None else ""
        budget = self.transcript_chars - len(previous)
        # a batch shares the budget: each message gets its share, so no turn of it is left out for length
        share = max(MIN_MESSAGE_CHARS, budget // (2 * len(new_turns)) - 20)
        blocks, omitted = self.newest_that_fit(new_turns, first, budget, min(self.message_chars, share))
        skipped = (first - 1 - through) + omitted
        parts = []
        if previous:
            parts.append(f"Summary of turns 1-{through}:\n{previous}")
        if skipped:
            parts.append(f"[{skipped} turns after that are left out: too long to include]")
            logger.warning("actor_id=<%s> | session_id=<%s> | rolling summary skips %d turns",
                           actor_id, session_id, skipped)
        parts.append("Later turns:\n" + "\n\n".join(blocks))
        parts.append(f"Write one summary of turns 1-{target} of this conversation.")
        text = self.complete("\n\n".join(parts))
        logger.debug(
            "actor_id=<%s> | session_id=<%s> | folded turns %d-%d into the rolling summary in %.1f ms",
            actor_id, session_id, through + 1, target, (time.perf_counter() - started) * 1e3,
        )
        return Summary(text, target)


def numbered(turns: Sequence[Turn], last: int, first: int, target: int) -> list[Turn] | None:
    """Turns ``first``..``target`` of ``turns``, the session's turns through turn ``last``; None unless all are there."""
    base = last - len(turns) + 1
    if first < base or target > last or first > target:
        return None
    return list(turns[first - base: target - base + 1])
