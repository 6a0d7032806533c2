"""Messages as stores keep them: to and from plain fields, grouped into turns, checked before a write."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole

from memory.values import Turn

logger = logging.getLogger(__name__)

_ROLES = {role.value: role for role in MessageRole}


def message_to_dict(message: ConversationalMessage) -> dict[str, str]:
    return {"role": message.role.value, "text": message.text}


def message_from_dict(data: object) -> ConversationalMessage | None:
    """Rebuild a stored message; None (and a warning) for anything malformed or foreign."""
    try:
        role = MessageRole(data["role"])  # type: ignore[index]
        text = data["text"]  # type: ignore[index]
        if not isinstance(text, str):
            raise TypeError("text is not a string")
        return ConversationalMessage(text, role)
    except (KeyError, TypeError, ValueError) as e:
        logger.warning("skipping a stored message that is not a valid message: %s", e)
        return None


def message_from_fields(role: object, text: object) -> ConversationalMessage | None:
    """``message_from_dict`` without building a dict or an enum by value: every window read runs it per message."""
    found = _ROLES.get(role) if isinstance(role, str) else None
    if found is not None and isinstance(text, str):
        return ConversationalMessage(text, found)
    return message_from_dict({"role": role, "text": text})  # None, with the warning that says why


def group_turns(messages: Sequence[ConversationalMessage]) -> list[Turn]:
    """Group messages (oldest first) into turns: a new turn starts at each USER message."""
    turns: list[Turn] = []
    for message in messages:
        if message.role == MessageRole.USER or not turns:
            turns.append([])
        turns[-1].append(message)
    return turns


def turns_by_number(numbered: Iterable[tuple[int, ConversationalMessage | None]]) -> list[Turn]:
    """Messages tagged with their stored turn number (oldest first) grouped into turns; None (a message that
    could not be read back) is left out. For stores that keep each message as a row with its turn."""
    turns: list[Turn] = []
    current = None
    for turn, message in numbered:
        if message is None:
            continue
        if turn != current:
            turns.append([])
            current = turn
        turns[-1].append(message)
    return turns


def count_user_messages(messages: Sequence[ConversationalMessage]) -> int:
    return sum(1 for m in messages if m.role == MessageRole.USER)


def reply_of(messages: Sequence[ConversationalMessage]) -> str:
    """The assistant text of a stored turn (its ASSISTANT messages, joined): what the client was answered."""
    return "\n".join(m.text for m in messages if m.role == MessageRole.ASSISTANT)


def check_messages(messages: Sequence[ConversationalMessage]) -> None:
    if not messages:
        raise ValueError("add_turns needs at least one message")
    for message in messages:
        if not isinstance(message, ConversationalMessage):
            raise TypeError(f"add_turns takes ConversationalMessage objects, not {type(message).__name__}")


def check_idempotency_key(key: str | None) -> None:
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError("an idempotency key must be a non-empty string")
