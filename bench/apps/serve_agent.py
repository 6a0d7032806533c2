"""Run ``agent.py``'s own ``main()`` (settings, logging, store, model), listening on 127.0.0.1 only.

``BedrockAgentCoreApp.run`` binds 0.0.0.0 when it believes it is in a container (``/.dockerenv``);
the benchmarks keep every socket on loopback. ``BENCH_AGENT_ROOT`` names the checkout to run
(default: this one). With ``BENCH_MODEL_DELAY_MS`` the echo provider's models (chat and summaries)
wait that long per call and stop at their token caps (``bench/scripted_model.py``): the product is
unchanged, only the model its factory returns for ``MODEL_PROVIDER=echo`` is the benchmark's.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

root = Path(os.environ.get("BENCH_AGENT_ROOT") or Path(__file__).resolve().parents[2])
sys.path.insert(0, str(root))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agent  # noqa: E402
import models  # noqa: E402
from scripted_model import DELAY_ENV, model_from_env  # noqa: E402

agent.app.run = functools.partial(agent.app.run, host="127.0.0.1")  # type: ignore[method-assign]

if os.environ.get(DELAY_ENV):
    provider_model = models.provider_model

    def waiting_provider_model(provider: str, settings: Any, max_tokens: int) -> Any:
        if provider != "echo":
            return provider_model(provider, settings, max_tokens)
        return model_from_env(max_tokens), f" | {DELAY_ENV}=<{os.environ[DELAY_ENV]}>"

    models.provider_model = waiting_provider_model

if __name__ == "__main__":
    agent.main()
