"""``agent.py``'s ``main()`` with long-term memory wired as ``docs/longterm.md`` specifies (the benchmark's LTM row).

Until long-term memory is wired into ``service.Assistant``, the assistant is
``tests.longterm_wiring.LongTermAssistant`` (the same calls, made by a subclass) with
``longterm.create_long_term(settings, store.name)``; afterwards this file is deleted and the row runs
``serve_agent.py`` with ``LONG_TERM_MEMORY=on``. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

root = Path(os.environ.get("BENCH_AGENT_ROOT") or Path(__file__).resolve().parents[2])
sys.path.insert(0, str(root))

import agent  # noqa: E402
import longterm  # noqa: E402
from memory import create_store  # noqa: E402
from models import create_model  # noqa: E402
from tests.longterm_wiring import LongTermAssistant  # noqa: E402


def build_assistant(settings):  # type: ignore[no-untyped-def]
    store = create_store(settings)
    ltm = longterm.create_long_term(settings, store.name)
    assert ltm is not None, "LONG_TERM_MEMORY is off for this backend"
    return LongTermAssistant(settings, store, create_model(settings), ltm=ltm)


agent.build_assistant = build_assistant  # type: ignore[assignment]
agent.app.run = functools.partial(agent.app.run, host="127.0.0.1")  # type: ignore[method-assign]

if __name__ == "__main__":
    agent.main()
