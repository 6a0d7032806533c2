"""The conversation every benchmark replays: deterministic texts of realistic length.

Standard library only: ``bench/openai_session.py`` imports it from a separate venv.
"""

from __future__ import annotations

import random

WORDS = (
    "the trip to Oslo in May should include a day on the fjord a museum visit and good coffee near the "
    "harbour we could book the train from Bergen or fly and I would like to keep the budget under two "
    "thousand euros for both of us while leaving time for a concert and a long walk in the park what "
    "about the weather rain jacket hotel breakfast tickets opening hours ferry schedule restaurant "
    "reservation vegetarian options children discount airport bus receipts passport insurance"
).split()


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def user_text(turn: int) -> str:
    """Turn ``turn``'s user message: 25-45 words (about 150-280 characters), unique per turn."""
    rng = random.Random(turn)
    return f"[{turn}] " + _sentence(rng, rng.randint(25, 45))


def assistant_text(turn: int) -> str:
    """Turn ``turn``'s assistant reply: 70-130 words (about 450-800 characters)."""
    rng = random.Random(1_000_000 + turn)
    return " ".join(_sentence(rng, rng.randint(10, 20)) for _ in range(rng.randint(5, 8)))


def echo_reply(text: str) -> str:
    """What the echo models (ours, and the one the alternatives get) answer."""
    return f"You said '{text}'"
