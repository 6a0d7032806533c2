"""Strands hook providers: the memory of one request's turn, and its model-call timer."""

from hooks.memory import MemoryHooks
from hooks.model_timer import ModelTimer

__all__ = ["MemoryHooks", "ModelTimer"]
