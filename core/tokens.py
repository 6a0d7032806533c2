"""The one token estimate: what a text costs a model, without its tokenizer (well under a microsecond).

The rule is UTF-8 bytes / 4, rounded up. ``bench/token_estimate.py`` compares it with SmolLM2's real
tokenizer and with the rule long-term memory used before (characters / 4, at least one token per word);
estimate / real over each kind of text (docs/models.md):

- the chat's user messages: 1.00 (bytes) against 0.92 (characters); replies and prose ~1.2-1.3 both;
- markdown and code: 0.80-0.91 both;
- German, French, Spanish, Russian, Chinese: 0.59 against 0.43, the worst message 0.40 against 0.12
  (Chinese: one character, 3 bytes, is about one token).

An under-count is what overflows a prompt, so bytes it is: characters / 4, even with its per-word floor,
never counted more than bytes / 4 on any kind of text measured. Markdown's under-count (~20 %) is what
the local model's ``LOCAL_PROMPT_RESERVE`` keeps tokens spare for.
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
