"""Every long-term backend, described once, and how ``LTM_BACKEND`` (or its default) picks one.

``LTM_BACKEND`` names an entry of ``LONG_TERM_BACKENDS``; unset, the session backend's entry decides
(``memory.registry.SessionBackend.long_term``, else ``sqlite`` for sessions kept on this replica and ``off``
for sessions every replica shares: records on one replica could not be recalled or forgotten on another).
``LONG_TERM_MEMORY=off`` is ``off``; ``=on`` is the default, or SQLite on this replica where that is ``off``.
Adding a backend is a module of its own plus one ``LongTermBackend`` entry; factories import it when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import ConfigError, LongTermUnavailable
from memory.registry import SessionBackend

if TYPE_CHECKING:
    from core.settings import Settings
    from longterm.base import LongTermMemory

#: the ``LTM_BACKEND`` that turns long-term memory off
OFF = "off"


@dataclass(frozen=True)
class LongTermBackend:
    """One ``LTM_BACKEND`` value."""

    name: str
    #: builds it for these settings and session backend (``ConfigError`` for settings it refuses); None: off
    factory: Callable[[Settings, SessionBackend], LongTermMemory] | None
    #: the environment variables it reads (``LTM_*`` aside), for the docs and their test
    settings: tuple[str, ...]
    #: whether every replica reads and forgets the same records
    shared: bool
    #: how to choose it, as a server without long-term memory says it (``LTM_BACKEND=... with ...``)
    how: str = ""


def _local(settings: Settings, session: SessionBackend) -> LongTermMemory:
    """SQLite beside ``SESSION_DB``; in this process when the sessions are (gone at restart, like them)."""
    from longterm.embedding import Embedder, EmbeddingModelMissing
    from longterm.local import LocalLongTermMemory
    from longterm.sqlite_store import SQLiteLongTermStore

    try:
        embedder = Embedder()
    except EmbeddingModelMissing as e:
        raise ConfigError(f"LONG_TERM_MEMORY needs its embedding model ({e}); or set LONG_TERM_MEMORY=off") from e
    try:
        store = SQLiteLongTermStore(None if session.in_process else settings.ltm_db,
                                    synchronous=settings.sqlite_synchronous,
                                    busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    except LongTermUnavailable as e:
        raise ConfigError(f"SESSION_DB={str(settings.session_db)!r}: {e.message}") from e
    return LocalLongTermMemory(store, embedder)


def _agentcore(settings: Settings, session: SessionBackend) -> LongTermMemory:
    from longterm.agentcore import AgentCoreLongTermMemory

    if not settings.memory_id:
        raise ConfigError("LTM_BACKEND=agentcore needs MEMORY_ID (or BEDROCK_AGENTCORE_MEMORY_ID)")
    return AgentCoreLongTermMemory(settings.memory_id, settings.ltm_namespace, region_name=settings.aws_region)


LONG_TERM_BACKENDS: dict[str, LongTermBackend] = {entry.name: entry for entry in (
    LongTermBackend("sqlite", _local, ("SESSION_DB", "SQLITE_SYNCHRONOUS", "SQLITE_BUSY_TIMEOUT_MS"), shared=False,
                    how="LTM_BACKEND=sqlite (records on this replica only)"),
    LongTermBackend("agentcore", _agentcore, ("MEMORY_ID", "LTM_NAMESPACE", "AWS_REGION"), shared=True,
                    how="LTM_BACKEND=agentcore and MEMORY_ID (the AgentCore memory's own records)"),
    LongTermBackend(OFF, None, (), shared=False),
)}
#: where ``LONG_TERM_MEMORY=on`` keeps records when the session backend's default is ``off``
ON_THIS_REPLICA = "sqlite"


@dataclass(frozen=True)
class Choice:
    """The long-term backend chosen, and what chose it (for the start-up line and ``off_reason``)."""

    backend: LongTermBackend
    session: SessionBackend
    #: ``LTM_BACKEND=...``, ``LONG_TERM_MEMORY=...`` or ``the default for MEMORY_BACKEND=...``
    chosen_by: str
    #: the variable that chose it (``LTM_BACKEND`` or ``LONG_TERM_MEMORY``); None: the session backend's default
    variable: str | None

    @property
    def by_default(self) -> bool:
        return self.variable is None


def default_for(session: SessionBackend) -> str:
    """``LTM_BACKEND``'s default for a session backend: its own choice, else local unless its sessions are shared."""
    if session.long_term is not None:
        return session.long_term
    return OFF if session.shared else ON_THIS_REPLICA


def choose(settings: Settings, session: SessionBackend) -> Choice:
    """The long-term backend for these settings; ``ConfigError`` naming the choices for an unknown name."""
    default = f"the default for MEMORY_BACKEND={session.name}"
    if settings.ltm_backend is not None:
        name, variable, chosen_by = settings.ltm_backend, "LTM_BACKEND", f"LTM_BACKEND={settings.ltm_backend}"
    elif settings.long_term_memory is False:
        name, variable, chosen_by = OFF, "LONG_TERM_MEMORY", "LONG_TERM_MEMORY=off"
    elif settings.long_term_memory and default_for(session) == OFF:
        name, variable, chosen_by = ON_THIS_REPLICA, "LONG_TERM_MEMORY", "LONG_TERM_MEMORY=on"
    else:  # LONG_TERM_MEMORY unset, or on where the default is on anyway
        name, variable, chosen_by = default_for(session), None, default
    backend = LONG_TERM_BACKENDS.get(name)
    if backend is None:
        if settings.ltm_backend is None:  # a session backend whose default this build lacks
            raise ConfigError(f"{default} is LTM_BACKEND={name}, which this build does not have; set LTM_BACKEND")
        raise ConfigError(f"LTM_BACKEND={name!r} is not one of {', '.join(LONG_TERM_BACKENDS)}")
    return Choice(backend, session, chosen_by, variable)


def how_to_turn_on(choice: Choice) -> str:
    """What to set to turn long-term memory on, from the entries this build has (shared ones first)."""
    if choice.variable == "LONG_TERM_MEMORY":  # it said off: on is the way back (its default, or SQLite here)
        return "LONG_TERM_MEMORY=on (or an LTM_BACKEND)"
    ways = [b.how for b in sorted(LONG_TERM_BACKENDS.values(), key=lambda b: not b.shared)
            if b.factory is not None and b.how]
    if choice.variable is None:  # LONG_TERM_MEMORY=on would not contradict anything set
        off = default_for(choice.session) == OFF
        ways.append(f"LONG_TERM_MEMORY=on (as LTM_BACKEND={ON_THIS_REPLICA})" if off else "LONG_TERM_MEMORY=on")
    return ", or ".join(ways)
