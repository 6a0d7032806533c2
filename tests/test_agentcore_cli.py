"""The starter toolkit's real ``agentcore invoke --dev`` against the real server, as the README shows it.

The server runs as ``make run`` leaves it on a machine without AWS credentials:
``MODEL_PROVIDER`` unset, so the local model (SmolLM2) answers.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.aws_env import remove_aws_credentials
from tests.helpers.server import Server

AGENTCORE = Path(sys.executable).parent / "agentcore"


def agentcore_invoke(payload: dict[str, Any] | str, session: str, port: int, cwd: Path) -> str:
    """Run ``agentcore invoke --dev <payload> --session-id <session> --port <port>``; return what it printed."""
    env = {**os.environ, "AGENTCORE_SUPPRESS_RECOMMENDATION": "1", "COLUMNS": "10000", "NO_COLOR": "1"}
    argument = payload if isinstance(payload, str) else json.dumps(payload)
    result = subprocess.run(
        [str(AGENTCORE), "invoke", "--dev", argument, "--session-id", session, "--port", str(port)],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "Response from dev server" in result.stdout, result.stdout + result.stderr
    return result.stdout


def printed_reply(output: str) -> dict[str, Any]:
    """The server's JSON body, which the CLI prints as ``{'response': '<body>'}``."""
    printed = ast.literal_eval(output[output.index("{"):].strip())
    return json.loads(printed["response"])


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as monkeypatch:
        remove_aws_credentials(monkeypatch, tmp)
        monkeypatch.delenv("MODEL_PROVIDER", raising=False)
        server = Server({"MODEL_PROVIDER": "", "MAX_TOKENS": "24", "SESSION_DB": str(tmp / "sessions.db")},
                        log_path=tmp / "server.log")
    server.start(timeout=120)
    yield server
    server.stop()


def test_agentcore_invoke_dev_continues_conv1_and_starts_conv2(local_server: Server, tmp_path: Path) -> None:
    first = printed_reply(agentcore_invoke({"message": "Hello"}, "conv1", local_server.port, tmp_path))
    second = printed_reply(agentcore_invoke({"message": "How are you?"}, "conv1", local_server.port, tmp_path))
    other = printed_reply(agentcore_invoke({"message": "Hello"}, "conv2", local_server.port, tmp_path))
    assert (first["session_id"], first["message_count"], first["history_length"]) == ("conv1", 1, 0)
    assert (second["session_id"], second["message_count"], second["history_length"]) == ("conv1", 2, 1)
    assert (other["session_id"], other["message_count"], other["history_length"]) == ("conv2", 1, 0)
    for reply in (first, second, other):  # a real model's words, not the echo stand-in
        assert reply["response"].strip() and not reply["response"].startswith("You said")
    log = local_server.log()
    assert "model_provider=<local> | reason=<MODEL_PROVIDER is unset and no AWS credentials resolve>" in log
    assert list(tmp_path.iterdir()) == []  # `invoke --dev` needs no .bedrock_agentcore.yaml and writes none


def test_agentcore_invoke_dev_prints_a_stream(local_server: Server, tmp_path: Path) -> None:
    output = agentcore_invoke({"message": "Hello", "stream": True}, "conv3", local_server.port, tmp_path)
    text, final = output.split("Response from dev server:", 1)[1].rsplit("{", 1)
    assert text.strip()  # the deltas, printed as they came
    final = json.loads("{" + final)
    assert isinstance(final["memories_used"], int)  # long-term memory is on by default (recalls the earlier "Hello"s)
    assert final == {"session_id": "conv3", "actor_id": "default_user", "message_count": 1, "history_length": 0,
                     "memories_used": final["memories_used"], **({"truncated": True} if "truncated" in final else {})}


def test_a_plain_text_argument_arrives_as_prompt_and_is_the_message(local_server: Server, tmp_path: Path) -> None:
    """The CLI wraps an argument that is not JSON as {"prompt": ...}; without `prompt` support this is a 400."""
    reply = printed_reply(agentcore_invoke("Hello there", "conv4", local_server.port, tmp_path))
    assert (reply["session_id"], reply["message_count"]) == ("conv4", 1) and reply["response"].strip()


def test_the_server_with_the_local_model_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    server = Server({"MODEL_PROVIDER": "local", "MAX_TOKENS": "8", "SESSION_DB": str(tmp_path / "s.db")},
                    log_path=tmp_path / "server.log").start(timeout=120)
    try:
        status, body = server.invoke({"message": "Hi"}, "c")
        assert status == 200 and body["response"]
    finally:
        server.stop()  # SIGTERM, then SIGKILL if still running after 10 s
    # uvicorn shuts down, then re-raises the SIGTERM it caught; -SIGKILL would mean the model server hung the exit
    assert server.process is not None and server.process.returncode == -signal.SIGTERM, server.log()[-2000:]


def test_the_start_up_line_names_the_local_models_context(local_server: Server) -> None:
    [line] = [line for line in local_server.log().splitlines() if "serving on " in line]
    assert "model=<SmolLM2-135M-Instruct.Q4_1.gguf>" in line
    assert "context=<2048 tokens x 2 slots>" in line
