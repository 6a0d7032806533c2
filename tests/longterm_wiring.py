"""The request-path wiring of long-term memory, as ``docs/longterm.md`` specifies it, for the HTTP tests.

``LongTermAssistant`` is ``service.Assistant`` plus exactly the calls the lead wires into
``service/`` (the ``# WIRE:`` lines): until then the HTTP tests run against this subclass;
afterwards they run unchanged against ``Assistant`` itself (replace ``LongTermAssistant``
in ``tests/test_longterm_http.py``'s fixture) and this file is deleted.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import JSONResponse

from core.errors import AssistantError
from hooks.longterm import LongTermHooks, window_turns
from hooks.memory import MemoryHooks
from longterm import LongTermMemory, forget_action, parse_search, search_action
from service import Assistant
from service.identity import resolve_actor_id, resolve_session_id
from service.requests import ChatRequest
from strands import Agent
from tools.longterm import LongTermTools

LONG_TERM_ACTIONS = ("search_memory", "forget")


class LongTermAssistant(Assistant):
    def __init__(self, *args: Any, ltm: LongTermMemory, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ltm = ltm  # WIRE: Assistant.__init__: self.ltm = create_long_term(settings, store.name)
        self._longterm: dict[int, LongTermHooks] = {}
        self._hooks_of: dict[int, MemoryHooks] = {}

    def _long_term_action(self, payload: object, context: Any) -> dict[str, Any] | JSONResponse | None:
        # WIRE: service/requests.py: ACTIONS += ("search_memory", "forget"); run_action dispatches them
        if isinstance(payload, dict) and payload.get("action") in LONG_TERM_ACTIONS:
            try:
                headers = getattr(context, "request_headers", None)
                actor_id = resolve_actor_id(payload, headers)
                resolve_session_id(getattr(context, "session_id", None))
                if payload["action"] == "search_memory":
                    body = search_action(self.ltm, actor_id, parse_search(payload, self.settings.ltm_top_k))
                else:
                    body = forget_action(self.ltm, actor_id)
            except AssistantError as e:
                return JSONResponse(e.body(), status_code=e.status)
            return {**body, "actor_id": actor_id}
        return None

    def handle(self, payload: object, context: Any) -> Any:
        answered = self._long_term_action(payload, context)
        return answered if answered is not None else super().handle(payload, context)

    async def serve(self, payload: object, context: Any) -> Any:
        answered = self._long_term_action(payload, context)
        return answered if answered is not None else await super().serve(payload, context)

    def build_agent(self, hooks: MemoryHooks) -> Agent:
        agent = super().build_agent(hooks)
        # WIRE: Assistant.build_agent: hooks=[memory_hooks, longterm_hooks, ModelTimer()] and the tool
        count_before = len(self.store.list_events(hooks.actor_id, hooks.session_id))
        longterm = LongTermHooks(self.ltm, hooks.actor_id, hooks.session_id, top_k=self.settings.ltm_top_k,
                                 min_score=self.settings.ltm_min_score, max_tokens=self.settings.ltm_max_tokens,
                                 window=lambda: window_turns(hooks.session_id, count_before, hooks.history_length))
        self._longterm[id(hooks)] = longterm
        agent.hooks.add_hook(longterm)
        tools = LongTermTools(self.ltm, hooks.actor_id, self.settings.ltm_top_k).tools
        agent.tool_registry.process_tools(tools)
        return agent

    def memory_hooks(self, request: ChatRequest) -> MemoryHooks:
        hooks = super().memory_hooks(request)
        self._hooks_of[id(request)] = hooks
        return hooks

    def _chat(self, request: ChatRequest) -> dict[str, Any]:
        try:
            body = super()._chat(request)
        finally:
            hooks = self._hooks_of.pop(id(request))
        longterm = self._longterm.pop(id(hooks))
        body["memories_used"] = longterm.memories_used  # WIRE: the response field
        if body["message_count"]:  # WIRE: after the store write: the exchange goes to long-term memory
            longterm.record(body["message_count"], request.message or "", body["response"], generation=0,
                            created_at=time.time())
        return body

    def _action(self, request: ChatRequest) -> dict[str, Any]:
        body = super()._action(request)
        if request.action == "clear_session":  # WIRE: clear_session also deletes the session's records
            body["deleted_memories"] = self.ltm.delete_session(request.actor_id, request.session_id, generation=0)
        return body

    def close(self) -> None:
        self.ltm.close()  # WIRE: Assistant.close drains the writer
        super().close()
