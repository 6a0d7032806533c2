"""Strands' ``FileSessionManager`` as its documentation uses it: one per request, and sessions seeded in its files.

The agent gets a ``SlidingWindowConversationManager(window_size=20)``, so the model sees the same
10 turns ours loads. Seeded sessions are written through the manager's own repository calls
(``create_session``, ``create_agent``, ``create_message``: its file layout, its atomic writes) and
hold what a real conversation of that many turns leaves: every message (an assistant message with
the usage metadata Strands attaches), and an ``agent.json`` whose window has already dropped all but
the last 20 (``removed_message_count``), so a request lists the whole directory and reads the 20.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.models import Model
from strands.session.file_session_manager import FileSessionManager
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from conversation import echo_reply, user_text
from service.assistant import SYSTEM_PROMPT

K = 10  # turns the model sees: MEMORY_K's default, as ours


def agent_for(session_id: str, storage_dir: str, model: Model) -> Agent:
    """A fresh agent bound to ``session_id``'s files (its history restored from them)."""
    return Agent(model=model, system_prompt=SYSTEM_PROMPT, callback_handler=None,
                 session_manager=FileSessionManager(session_id=session_id, storage_dir=storage_dir),
                 conversation_manager=SlidingWindowConversationManager(window_size=2 * K))


def conversation(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for turn in range(1, turns + 1):
        text = user_text(turn)
        messages += [{"role": "user", "content": [{"text": text}], "tracking_id": str(uuid.uuid4())},
                     {"role": "assistant", "content": [{"text": echo_reply(text)}], "tracking_id": str(uuid.uuid4()),
                      "metadata": {"usage": {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0},
                                   "metrics": {"latencyMs": 0}}}]
    return messages


def seed(storage_dir: str, sessions: Iterable[str], turns: int, model: Model) -> None:
    """Each of ``sessions`` holding ``turns`` turns, written by the file manager's own repository calls."""
    sessions = list(sessions)
    messages = conversation(turns)
    template = Agent(model=model, callback_handler=None,
                     conversation_manager=SlidingWindowConversationManager(window_size=2 * K))
    template.conversation_manager.removed_message_count = max(0, len(messages) - 2 * K)
    state = SessionAgent.from_agent(template)
    repository = FileSessionManager(session_id=sessions[0], storage_dir=storage_dir)  # creates the first session
    for session_id in sessions:
        if session_id != sessions[0]:
            repository.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
        repository.create_agent(session_id, state)
        for index, message in enumerate(messages):
            repository.create_message(session_id, state.agent_id, SessionMessage.from_message(message, index))
