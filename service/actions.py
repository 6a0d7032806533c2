"""The payload actions (``{"action": ...}``), one table: name -> parser -> handler, and what each needs.

A new action is one ``Action`` entry in ``ACTIONS`` and one handler here: the parser checks its
own fields (``service/parsing.py``), the handler answers from the store, long-term memory or
the summariser. What the entry says decides the rest, in one place each:

- ``per_session``: it acts on one session, so it needs a session id and runs holding the
  session's slot (a clear never races a turn being stored, a history page never shows half a
  turn). Otherwise it acts on the actor: the session header is ignored and no slot is taken.
- ``long_term``: it needs long-term memory; on a server without it, a 400 that says why and how
  to turn it on (before its fields are checked: fixing them would not help).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import AssistantError, BadRequest, NotFound
from core.settings import Settings
from core.timing import timed
from longterm import LongTermMemory, forget_action, off_reason, search_action
from memory.base import SessionStore
from memory.turn import TurnState
from models.summarizer import Summarizer
from service.failures import model_error
from service.actor_data import EXPORT_PAGE, erase_actor, export_page, record_json
from service.parsing import SearchRequest, before_field, cursor_field, page_size, parse_search, record_id_field
from service.tracing import traced_action
from service.views import history_body, sessions_body
from tools.session import SessionTools

#: ``list_sessions``' page size: default and largest
SESSIONS_PAGE = (20, 100)
#: ``get_history``'s page size: default and largest
HISTORY_PAGE = (50, 200)
#: ``list_memories``' page size: default and largest
MEMORIES_PAGE = (20, 100)


class Parts(Protocol):
    """What a handler reads: the process's settings, store, long-term memory and summariser (``Assistant``)."""

    settings: Settings
    store: SessionStore
    ltm: LongTermMemory | None
    summarizer: Summarizer


@dataclass(frozen=True)
class Page:
    """A page request: its size, and where it starts (a ``list_sessions`` cursor or a ``get_history`` turn)."""

    limit: int
    cursor: str | None = None
    before: int | None = None


@dataclass(frozen=True)
class Action:
    name: str
    #: the action's own fields, checked (``BadRequest`` naming the field), or None when it has none
    parse: Callable[[Mapping[str, object], Settings], Any]
    #: the answer: ``(parts, actor_id, session_id, parsed fields)`` -> the response body
    handle: Callable[[Parts, str, str, Any], dict[str, Any]]
    per_session: bool
    long_term: bool = False


def no_fields(payload: Mapping[str, object], settings: Settings) -> None:
    return None


def list_sessions(parts: Parts, actor_id: str, session_id: str, page: Page) -> dict[str, Any]:
    """One page of the actor's sessions, newest activity first (``InvalidCursor``: a 400)."""
    with timed("store_read"):
        found = parts.store.list_sessions(actor_id, page.limit, page.cursor)
    return sessions_body(actor_id, found)


def get_history(parts: Parts, actor_id: str, session_id: str, page: Page) -> dict[str, Any]:
    """One page of the session's turns (newest page first), its count and its rolling summary."""
    store = parts.store
    with timed("store_read"):
        turns = store.get_history(actor_id, session_id, page.limit, page.before)
        newest = turns if page.before is None else store.get_history(actor_id, session_id, 1)
        summary = store.get_summary(actor_id, session_id)
    # the newest turn's number is the session's message count (turn n is the n-th user message)
    message_count = newest.turns[-1].turn if newest.turns else 0
    return history_body(actor_id, session_id, message_count, turns, summary)


def session_tools(parts: Parts, actor_id: str, session_id: str) -> SessionTools:
    return SessionTools(parts.store, TurnState(actor_id, session_id), parts.summarizer, parts.ltm)


def clear_session(parts: Parts, actor_id: str, session_id: str, fields: None) -> dict[str, Any]:
    cleared = session_tools(parts, actor_id, session_id).clear()
    body: dict[str, Any] = {"action": "clear_session", "deleted": cleared.events}
    if cleared.memories is not None:
        body["deleted_memories"] = cleared.memories
    return body


def summarize_session(parts: Parts, actor_id: str, session_id: str, fields: None) -> dict[str, Any]:
    try:
        return {"action": "summarize_session", "summary": session_tools(parts, actor_id, session_id).summarize()}
    except AssistantError:
        raise
    except Exception as e:  # the summary model call failed; nothing was stored
        raise model_error(e) from e


def search_memory(parts: Parts, actor_id: str, session_id: str, search: SearchRequest) -> dict[str, Any]:
    assert parts.ltm is not None
    with timed("longterm_search"):
        return search_action(parts.ltm, actor_id, search.query, search.top_k)


def forget(parts: Parts, actor_id: str, session_id: str, fields: None) -> dict[str, Any]:
    """Every record of the actor. No slot needed to beat a write in flight: each carries the epoch this moves on."""
    assert parts.ltm is not None
    with timed("longterm_write"):
        return forget_action(parts.ltm, actor_id)


def list_memories(parts: Parts, actor_id: str, session_id: str, page: Page) -> dict[str, Any]:
    """What is remembered about the actor, newest first, a page at a time (``InvalidCursor``: a 400)."""
    assert parts.ltm is not None
    with timed("longterm_read"):
        found = parts.ltm.list_records(actor_id, page.limit, page.cursor)
    return {"action": "list_memories", "memories": [record_json(m) for m in found.records],
            "next_cursor": found.next_cursor}


def delete_memory(parts: Parts, actor_id: str, session_id: str, record_id: str) -> dict[str, Any]:
    """One record of the caller's actor. Unknown and another actor's are the same 404: nothing is revealed."""
    assert parts.ltm is not None
    with timed("longterm_write"):
        deleted = parts.ltm.delete_record(actor_id, record_id)
    if not deleted:
        raise NotFound("no memory with this 'record_id' for this actor (list_memories shows the ids)")
    return {"action": "delete_memory", "record_id": record_id, "deleted": 1}


def export(parts: Parts, actor_id: str, session_id: str, page: Page) -> dict[str, Any]:
    """One page of everything stored for the actor: sessions (turns, summary), then long-term records."""
    with timed("store_read"):
        return export_page(parts.store, parts.ltm, actor_id, page.limit, page.cursor)


def erase(parts: Parts, actor_id: str, session_id: str, fields: None) -> dict[str, Any]:
    """Delete everything stored for the actor, on whatever backend; how much of each kind went."""
    with timed("store_write"):
        return erase_actor(parts.store, parts.ltm, actor_id)


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("summarize_session", no_fields, summarize_session, per_session=True),
    Action("clear_session", no_fields, clear_session, per_session=True),
    Action("list_sessions", lambda p, s: Page(page_size(p, SESSIONS_PAGE), cursor=cursor_field(p)), list_sessions,
           per_session=False),
    Action("get_history", lambda p, s: Page(page_size(p, HISTORY_PAGE), before=before_field(p)), get_history,
           per_session=True),
    Action("search_memory", lambda p, s: parse_search(p, s.ltm_top_k), search_memory, per_session=False,
           long_term=True),
    Action("forget", no_fields, forget, per_session=False, long_term=True),
    Action("list_memories", lambda p, s: Page(page_size(p, MEMORIES_PAGE), cursor=cursor_field(p)), list_memories,
           per_session=False, long_term=True),
    Action("delete_memory", lambda p, s: record_id_field(p, "delete_memory"), delete_memory, per_session=False,
           long_term=True),
    Action("export", lambda p, s: Page(page_size(p, EXPORT_PAGE), cursor=cursor_field(p)), export, per_session=False),
    Action("erase", no_fields, erase, per_session=False),
)}


def action_named(name: object) -> Action:
    """The table's entry for ``name``, or a 400 listing the known ones."""
    action = ACTIONS.get(name) if isinstance(name, str) else None
    if action is None:
        shown = repr(name) if not isinstance(name, (dict, list)) else type(name).__name__
        raise BadRequest(f"unknown action {shown[:80]}; known actions: {', '.join(ACTIONS)}")
    return action


def long_term_off(action: str, settings: Settings) -> BadRequest:
    """The 400 of a long-term action on a server without long-term memory: why it is off and how to turn it on."""
    return BadRequest(f"'{action}' needs long-term memory, which is off on this server: {off_reason(settings)}")


@traced_action
def run_action(parts: Parts, action: Action, actor_id: str, session_id: str, fields: Any) -> dict[str, Any]:
    """The action's answer, with the ids it was for (the caller holds the session slot when it needs one)."""
    if action.long_term and parts.ltm is None:  # parse_request refuses these first; a direct caller may not have
        raise long_term_off(action.name, parts.settings)
    body = action.handle(parts, actor_id, session_id, fields)
    if action.per_session:
        body["session_id"] = session_id
    return {**body, "actor_id": actor_id}
