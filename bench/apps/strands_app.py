"""Benchmark 3 (b): a Strands agent per request with the echo model, without memory.

The same runtime, model and system prompt as ``agent.py``, one fresh ``Agent`` per request (an
Agent must not serve two calls at once), and nothing loaded or stored.

With ``BENCH_HISTORY_TURNS=N`` (the (b2) row) every agent is handed the same N turns of history
as plain messages, built once at start-up: what giving the model a 10-turn context costs Strands
by itself, with no store behind it. ``BENCH_MODEL_DELAY_MS``: the model waits that long per call.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bedrock_agentcore.runtime import BedrockAgentCoreApp  # noqa: E402
from bedrock_agentcore.runtime.context import RequestContext  # noqa: E402
from strands import Agent  # noqa: E402
from strands.types.content import Messages  # noqa: E402

from service.assistant import SYSTEM_PROMPT  # noqa: E402
from conversation import echo_reply, user_text  # noqa: E402
from scripted_model import model_from_env  # noqa: E402

app = BedrockAgentCoreApp()
model = model_from_env()
HISTORY: Messages = []
for turn in range(1, int(os.environ.get("BENCH_HISTORY_TURNS", "0")) + 1):
    HISTORY += [{"role": "user", "content": [{"text": user_text(turn)}]},
                {"role": "assistant", "content": [{"text": echo_reply(user_text(turn))}]}]


@app.entrypoint
def handler(payload: Any, context: RequestContext) -> dict[str, Any]:
    agent = Agent(model=model, system_prompt=SYSTEM_PROMPT, callback_handler=None, messages=copy.deepcopy(HISTORY))
    result = agent(payload["message"])
    return {"response": str(result).strip(), "session_id": context.session_id}


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8080")), host="127.0.0.1")
