"""Long-term memory: what an actor said in earlier sessions, searchable from every later one.

The request path needs only this package's front door:

    ltm = create_long_term(settings, store.name)         # at start-up; None when off (one log line says why)
    check_settings(settings)                             # first at start-up: the backends' names, one line
    off_reason(settings)                                 # why it is off and how to turn it on (a 400 says it)
    ltm.epoch(actor_id)                                  # when a request starts (LongTermHooks reads it)
    ltm.search(actor_id, query, top_k, exclude)          # before the model call (LongTermHooks does it)
    ltm.record_exchange(actor_id, session_id, turn, user, reply, created_at, generation, epoch)  # after the store
    ltm.delete_session(actor_id, session_id, generation) # with clear_session
    ltm.forget(actor_id)                                 # the "forget" action
    ltm.close()                                          # at shutdown: drains the background writer

Where records live is ``LTM_BACKEND`` (``longterm.registry``: one entry per backend; unset, the session
backend's entry decides). See ``docs/longterm.md`` for the design and the figures.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from longterm.actions import forget_action, search_action
from longterm.base import LongTermMemory, Memory, MessageRecord
from longterm.registry import LONG_TERM_BACKENDS, LongTermBackend, choose, how_to_turn_on
from memory.registry import backend_named, session_backend

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = ["LONG_TERM_BACKENDS", "LongTermBackend", "LongTermMemory", "Memory", "MessageRecord", "check_settings",
           "create_long_term", "forget_action", "off_reason", "search_action"]

logger = logging.getLogger(__name__)


def create_long_term(settings: Settings, session_store_name: str) -> LongTermMemory | None:
    """The long-term memory ``LTM_BACKEND`` (or its default for this session backend) names, or None (off).

    Logs one line saying which and why; a warning when the records stay on this replica while the
    sessions are shared by every replica (other replicas neither recall them nor delete them on forget).
    """
    choice = choose(settings, backend_named(session_store_name))
    session, backend = choice.session, choice.backend
    if backend.factory is None:
        if choice.by_default:
            logger.info("long-term memory: off for MEMORY_BACKEND=%s (its sessions are shared by every replica, "
                        "records kept on one replica would not be); turn it on with %s", session.name,
                        how_to_turn_on(choice))
        else:
            logger.info("long-term memory: off (%s) | backend=<%s>", choice.chosen_by, session.name)
        return None
    ltm = backend.factory(settings, session)
    if session.shared and not backend.shared:
        logger.warning("long-term memory: %s with MEMORY_BACKEND=%s keeps records on THIS replica (%s): other "
                       "replicas neither see them nor delete them on forget", choice.chosen_by, session.name,
                       ltm.describe())
    logger.info("long-term memory: on | backend=<%s> | %s | top_k=%d min_score=%.2f max_tokens=%d | "
                "ltm_backend=<%s> (%s)", session.name, ltm.describe(), settings.ltm_top_k, settings.ltm_min_score,
                settings.ltm_max_tokens, backend.name, choice.chosen_by)
    return ltm


def check_settings(settings: Settings) -> None:
    """Start-up, before anything is built: ``MEMORY_BACKEND`` and ``LTM_BACKEND`` name entries (else one
    ``ConfigError`` line listing the choices), so a typo does not wait for the store and the model."""
    choose(settings, session_backend(settings))


def off_reason(settings: Settings) -> str:
    """Why long-term memory is off on a server started with ``settings``, and what to set to turn it on."""
    choice = choose(settings, session_backend(settings))
    if choice.backend.factory is not None:  # its settings turn it on: the server was built without it
        why = "this assistant was built without it"
    elif choice.by_default:
        why = f"{choice.chosen_by}, whose sessions every replica shares"
    else:
        why = choice.chosen_by
    return f"{why}; start the server with {how_to_turn_on(choice)} to turn it on (see docs/longterm.md)"
