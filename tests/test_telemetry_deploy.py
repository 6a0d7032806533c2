"""Deployed under the AWS Distro for OpenTelemetry, as AgentCore documents for Strands agents.

Checked from the files with the starter toolkit's own logic (what it would start), and by starting
the app that way: ``opentelemetry-instrument python agent.py`` with the distro's configurator, its
traces received by an OTLP/HTTP receiver in the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bedrock_agentcore_starter_toolkit.utils.runtime.config import get_agentcore_directory, load_config
from bedrock_agentcore_starter_toolkit.utils.runtime.entrypoint import build_entrypoint_array
from bedrock_agentcore_starter_toolkit.utils.runtime.package import CodeZipPackager

from tests.helpers.otlp_receiver import OTLPReceiver
from tests.helpers.server import Server

ROOT = Path(__file__).resolve().parent.parent
INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"


def test_requirements_pin_the_aws_distro_so_the_toolkit_starts_the_agent_instrumented() -> None:
    assert re.search(r"^aws-opentelemetry-distro==[\d.]+$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    has_distro = CodeZipPackager()._check_otel_distro(ROOT / "requirements.txt")
    agent = load_config(ROOT / ".bedrock_agentcore.yaml", autofill_missing_aws=False).get_agent_config()
    assert agent.aws.observability.enabled
    assert build_entrypoint_array(agent.entrypoint, has_distro, agent.aws.observability.enabled) == \
        ["opentelemetry-instrument", "agent.py"]


def test_the_container_runs_the_agent_under_opentelemetry_instrument_with_observability_on() -> None:
    agent = load_config(ROOT / ".bedrock_agentcore.yaml", autofill_missing_aws=False) \
        .get_agent_config("session_assistant_container")
    assert agent.aws.observability.enabled
    dockerfile = (get_agentcore_directory(ROOT, agent.name, agent.source_path) / "Dockerfile").read_text()
    commands = re.findall(r"^CMD (.+)$", dockerfile, re.MULTILINE)
    assert commands == ['["opentelemetry-instrument", "python", "agent.py"]']


def adot_environment(receiver: OTLPReceiver) -> dict[str, str]:
    """What the runtime injects, pointed at the test's receiver. AGENT_OBSERVABILITY_ENABLED (as on the runtime)
    also keeps the distro from probing EC2/ECS/EKS metadata endpoints: nothing leaves loopback."""
    return {
        "AGENT_OBSERVABILITY_ENABLED": "true", "OTEL_PYTHON_DISTRO": "aws_distro",
        "OTEL_PYTHON_CONFIGURATOR": "aws_configurator", "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.base_url}/v1/traces",
        "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_RESOURCE_ATTRIBUTES": "service.name=session_assistant", "OTEL_BSP_SCHEDULE_DELAY": "100",
        "LONG_TERM_MEMORY": "off",
    }


def test_started_under_opentelemetry_instrument_a_turns_spans_reach_the_collector_with_the_session_id(
        tmp_path: Path) -> None:
    assert INSTRUMENT.exists(), "opentelemetry-instrument comes with aws-opentelemetry-distro (requirements.txt)"
    with OTLPReceiver() as receiver:
        server = Server({**adot_environment(receiver), "SESSION_DB": str(tmp_path / "s.db")},
                        command=[str(INSTRUMENT), sys.executable, "agent.py"], log_path=tmp_path / "server.log")
        server.start()
        try:
            status, body = server.invoke({"message": "hello"}, session="otel-conv-1")
            assert status == 200 and body["message_count"] == 1
            spans = receiver.wait_for("invoke_agent Strands Agents")
            spans = receiver.wait_for("assistant.turn")
        finally:
            server.stop()
    turn = next(s for s in spans if s["name"] == "assistant.turn")
    in_turn = [s for s in spans if s["trace_id"] == turn["trace_id"] and s["span_id"] != turn["span_id"]
               and s["name"] != "POST /invocations" and not s["name"].startswith("POST /invocations ")]
    names = {s["name"] for s in in_turn}
    assert {"invoke_agent Strands Agents", "memory.load_window", "memory.store_turn"} <= names
    assert all(s["attributes"].get("session.id") == "otel-conv-1" for s in [turn, *in_turn]), \
        [(s["name"], s["attributes"].get("session.id")) for s in in_turn]
