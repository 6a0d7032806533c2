"""The one summariser, used by the ``summarize_session`` tool and action and by the rolling summary.

It turns turns into a summary and knows nothing of stores: the session tools read the turns
for ``summarize_turns``; the rolling summary's fold (``hooks/summary.py``) reads and writes the
stored summary around ``fold_turns``.

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
from collections.abc import Callable, Sequence
from typing import Protocol

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole
from strands.models import Model

from core.settings import Settings
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


#: one stored turn: its messages (a session store's ``Turn``; this module reads no store)
Turn = Sequence[ConversationalMessage]


class PriorSummary(Protocol):
    """A rolling summary as the summariser reads it (``memory.base.Summary`` is one)."""

    text: str
    through_turn: int


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
        # past summary_chars the text is clipped: it is not read (a model that echoes its prompt streams it all)
        text, stop = run_coroutine(lambda: stream_text(self.model, prompt, SUMMARY_SYSTEM_PROMPT, self.summary_chars))
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

    def summarize_turns(self, turns: Sequence[Turn], older: Callable[[], PriorSummary | None]) -> str:
        """A summary of a whole session's ``turns`` (turn 1 first); says so, without a model call, when empty.

        ``older`` reads the stored rolling summary: called only when the turns are too long to send
        whole, so it stands in for the oldest of them.
        """
        if not turns:
            return EMPTY_SESSION_SUMMARY
        blocks, omitted = self.newest_that_fit(turns, 1, self.transcript_chars)
        parts = [f"Summarise this conversation ({len(turns)} turns)."]
        if omitted:
            summary = older()
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
        return self.complete("\n\n".join(parts))

    def fold_turns(self, current: PriorSummary | None, new_turns: Sequence[Turn], first: int,
                   target: int) -> tuple[str, int]:
        """One summary of turns 1..``target``: ``current`` (through some turn before ``first``) and ``new_turns``.

        ``new_turns`` are turns ``first``..``target``. The turns between ``current`` and ``first``
        (too many for one call) are named as left out. Returns the summary text and how many turns it
        had to leave out. One bounded call: a batch shares the transcript budget, each message getting
        its share, so no turn of it is left out for length.
        """
        through = current.through_turn if current is not None else 0
        previous = clip(current.text, self.summary_chars) if current is not None else ""
        budget = self.transcript_chars - len(previous)
        share = max(MIN_MESSAGE_CHARS, budget // (2 * len(new_turns)) - 20)
        blocks, omitted = self.newest_that_fit(new_turns, first, budget, min(self.message_chars, share))
        skipped = (first - 1 - through) + omitted
        parts = []
        if previous:
            parts.append(f"Summary of turns 1-{through}:\n{previous}")
        if skipped:
            parts.append(f"[{skipped} turns after that are left out: too long to include]")
        parts.append("Later turns:\n" + "\n\n".join(blocks))
        parts.append(f"Write one summary of turns 1-{target} of this conversation.")
        return self.complete("\n\n".join(parts)), skipped
