"""Strands tools the assistant's agent can call."""
