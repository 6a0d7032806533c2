"""Strands hook providers."""

from hooks.memory import MemoryHooks

__all__ = ["MemoryHooks"]
