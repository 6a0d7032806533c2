"""The one token estimate: what a text costs a model, without its tokenizer (well under a microsecond).

The rule is UTF-8 bytes / 4, rounded up. ``bench/token_estimate.py`` compares it with SmolLM2's real
tokenizer and with the rule long-term memory used before (characters / 4, at least one token per word):
both count English chat within ~15 %, but on non-Latin scripts characters / 4 counts well under half of
the real tokens (Chinese or Russian characters take 2-3 bytes and about a token each), and an
under-count is what overflows a prompt, so bytes it is. The per-word floor bought nothing the bytes rule
does not already give (a word is at least one byte plus a space). Markdown and code run at ~3.2-3.6
bytes per token (under-counted by up to ~20 %); the local model's budget keeps ``LOCAL_PROMPT_RESERVE``
tokens spare for that.
"""

from __future__ import annotations

import math

#: UTF-8 bytes per token, calibrated on SmolLM2's tokenizer with ``bench/token_estimate.py`` (docs/models.md):
#: chat replies and questions run at about 4.5 bytes per token, plain prose at 5, markdown and code at 3.2-3.6,
#: non-Latin scripts lower. 4.0 over-counts chat by ~10 %, under-counts markdown by ~20 %
BYTES_PER_TOKEN = 4.0
#: tokens each chat message costs beyond its text (the chat template's role markers)
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """Tokens ``text`` takes, estimated from its UTF-8 size.

    Counting bytes rather than characters keeps the estimate safe for non-Latin scripts, whose
    characters take 2-4 bytes and usually more than one token each.
    """
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return math.ceil(size / BYTES_PER_TOKEN)


def message_tokens(text: str) -> int:
    """Tokens ``text`` takes as one chat message: its own, plus the chat template's role markers."""
    return estimate_tokens(text) + MESSAGE_OVERHEAD_TOKENS
