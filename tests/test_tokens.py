"""The one token estimate (``core.tokens``): what the history budget and long-term memory's budget both count."""

from __future__ import annotations

from core.tokens import MESSAGE_OVERHEAD_TOKENS, estimate_tokens, message_tokens
from longterm.text import estimate_tokens as long_term_estimate
from models.base import estimate_tokens as message_estimate


def test_english_text_is_about_four_characters_a_token() -> None:
    assert estimate_tokens("x" * 400) == 100
    assert estimate_tokens("a") == 1 and estimate_tokens("") == 0


def test_non_latin_text_counts_its_bytes_not_its_characters() -> None:
    chinese = "我计划五月去奥斯陆旅行。"  # 12 characters of 3 bytes each
    assert estimate_tokens(chinese) == 9  # characters / 4 would say 3


def test_a_lone_surrogate_is_counted_not_an_error() -> None:
    assert estimate_tokens("ab\ud800") == 2


def test_a_chat_message_adds_the_role_markers() -> None:
    assert message_tokens("x" * 40) == 10 + MESSAGE_OVERHEAD_TOKENS


def test_the_old_homes_count_the_same() -> None:
    text = "Планирую поездку в Осло в мае."
    assert long_term_estimate(text) == estimate_tokens(text)
    assert message_estimate(text) == message_tokens(text)
