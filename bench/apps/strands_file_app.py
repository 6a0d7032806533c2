"""Benchmark 3 (e): a Strands agent per request with Strands' ``FileSessionManager``, its documented use.

The same runtime, model and system prompt as ``agent.py``; each request builds a
``FileSessionManager`` for the request's session id under ``BENCH_SESSION_DIR`` and an agent that
restores the session from it, sees its last 10 turns (sliding window of 20 messages) and appends
the new turn (``bench/strands_files.py``). The answer carries ``history_length`` (turns restored)
so the benchmark can check that every request saw a full window. ``BENCH_MODEL_DELAY_MS``: the
model waits that long per call. Nothing serialises two requests of one session (the file manager
does not): the benchmark sends it distinct sessions only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bedrock_agentcore.runtime import BedrockAgentCoreApp  # noqa: E402
from bedrock_agentcore.runtime.context import RequestContext  # noqa: E402

from scripted_model import model_from_env  # noqa: E402
from strands_files import agent_for  # noqa: E402

app = BedrockAgentCoreApp()
model = model_from_env()
STORAGE = os.environ["BENCH_SESSION_DIR"]


@app.entrypoint
def handler(payload: Any, context: RequestContext) -> dict[str, Any]:
    agent = agent_for(context.session_id, STORAGE, model)
    restored = len(agent.messages) // 2
    result = agent(payload["message"])
    return {"response": str(result).strip(), "session_id": context.session_id, "history_length": restored}


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8080")), host="127.0.0.1")
