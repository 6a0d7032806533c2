"""Run ``agent.py``'s own ``main()`` (settings, logging, store, model), listening on 127.0.0.1 only.

``BedrockAgentCoreApp.run`` binds 0.0.0.0 when it believes it is in a container (``/.dockerenv``);
the benchmarks keep every socket on loopback. ``BENCH_AGENT_ROOT`` names the checkout to run
(default: this one).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

root = Path(os.environ.get("BENCH_AGENT_ROOT") or Path(__file__).resolve().parents[2])
sys.path.insert(0, str(root))

import agent  # noqa: E402

agent.app.run = functools.partial(agent.app.run, host="127.0.0.1")  # type: ignore[method-assign]

if __name__ == "__main__":
    agent.main()
