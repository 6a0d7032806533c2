"""Project files other tools read: the starter toolkit's .bedrock_agentcore.yaml, requirements pins."""

from __future__ import annotations

from pathlib import Path

from bedrock_agentcore_starter_toolkit.utils.runtime.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def test_agentcore_yaml_loads_and_validates_for_local_runs() -> None:
    config = load_config(ROOT / ".bedrock_agentcore.yaml", autofill_missing_aws=False)
    agent = config.get_agent_config()
    assert agent.entrypoint == "agent.py"
    assert (ROOT / agent.entrypoint).is_file()
    assert agent.deployment_type == "direct_code_deploy"
    assert agent.runtime_type == "PYTHON_3_11"
    assert agent.memory.mode == "STM_ONLY"
    assert agent.aws.account == "123456789012"
    assert agent.validate(for_local=True) == []
    assert "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Actor-Id" in agent.request_header_configuration[
        "requestHeaderAllowlist"
    ]


def test_every_requirement_is_pinned() -> None:
    lines = [
        line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.strip().startswith(("#", "-"))
    ]
    assert lines
    assert [line for line in lines if "==" not in line] == []
