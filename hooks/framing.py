"""Where recalled memory goes: one fenced block of quoted data ahead of the user's new message, never the system prompt.

The system prompt is the operator's alone. The rolling summary (``MemoryHooks.load_window``) and
the recalled long-term records (``LongTermHooks.recall``) are text a user once typed or the
model once wrote; each hook records its part in the ``TurnState`` and calls ``place``, which
(re)writes ONE block, ``core.quoting.fenced``, as the first content block of the newest user
message: after the whole history, so llama.cpp's prompt cache keeps every message before it
(only the block and the new message are read again), the same for every provider.

The block is never stored: the hooks store ``state.user_text`` (the user's own words, read by
``user_words`` without the block), and the pipeline records ``state.message``.
"""

from __future__ import annotations

from strands.hooks import BeforeInvocationEvent
from strands.types.content import Messages

from core.quoting import fenced, is_memory_block, own_words, summary_item
from memory.turn import TurnState


def user_words(messages: Messages | None) -> str:
    """The text of the user messages, without a memory block placed in them: what the user sent."""
    return "\n".join(
        "".join(own_words([block["text"] for block in message["content"] if "text" in block]))
        for message in messages or [] if message["role"] == "user"
    ).strip()


def memory_items(state: TurnState) -> list[str]:
    """The turn's quoted items: the rolling summary (when the window needs it), then the recalled records."""
    items = [summary_item(state.summary.through_turn, state.summary.text)] \
        if state.summary is not None and state.summary_in_prompt else []
    return items + state.recalled


def place(event: BeforeInvocationEvent, state: TurnState) -> None:
    """Put the turn's memory block first in the newest user message of the invocation (replacing one placed before).

    A copy of the messages is handed back through ``event.messages`` (Strands lets a
    ``BeforeInvocationEvent`` hook replace them); the caller's messages are not changed.
    """
    messages = list(event.messages or [])
    at = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "user"), None)
    if at is None:
        return
    content = list(messages[at]["content"])
    if len(content) > 1 and "text" in content[0] and is_memory_block(content[0]["text"]):
        content = content[1:]  # the block placed before (by the other hook): replaced, not doubled
    items = memory_items(state)
    messages[at] = {**messages[at], "content": [{"text": fenced(items)}, *content] if items else content}
    event.messages = messages
