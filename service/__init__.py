"""The request path behind ``agent.py``: parse and limits, identity, the turn, streaming, error mapping, logs."""

from service.assistant import SYSTEM_PROMPT, Assistant
from service.requests import ACTIONS, ChatRequest, parse_request

__all__ = ["ACTIONS", "SYSTEM_PROMPT", "Assistant", "ChatRequest", "parse_request"]
