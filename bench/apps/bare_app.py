"""Benchmark 3 (a): a bare ``BedrockAgentCoreApp`` handler, no agent, no memory (the runtime's own floor).

Served like ``agent.py`` (``app.run``, on 127.0.0.1), answering what the echo model would.
"""

from __future__ import annotations

import os
from typing import Any

from bedrock_agentcore.runtime import BedrockAgentCoreApp
from bedrock_agentcore.runtime.context import RequestContext

app = BedrockAgentCoreApp()


@app.entrypoint
def handler(payload: Any, context: RequestContext) -> dict[str, Any]:
    return {"response": f"You said '{payload['message']}'", "session_id": context.session_id}


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8080")), host="127.0.0.1")
