"""Run a few turns in this process with the SDK's in-memory exporter and metric reader; print what they saw.

A subprocess of ``tests/test_telemetry.py``: a global tracer provider can be set once per process, and
the test suite's own process must keep the no-op default. Prints one JSON object on stdout:
``{"spans": [...], "metrics": {...}}``. Environment: ``SESSION_DB``, ``MODEL_PROVIDER`` (echo), ...
"""

from __future__ import annotations

import json
import sys

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def main() -> None:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    from starlette.testclient import TestClient

    import agent
    from core.telemetry import configure_telemetry

    configure_telemetry()  # the distro's provider gets the session.id processor; here, ours does
    assistant = agent.build_assistant()
    agent.set_assistant(assistant)
    header = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
    try:
        with TestClient(agent.app) as client:
            for session, body in json.loads(sys.argv[1]):
                response = client.post("/invocations", json=body, headers={header: session})
                assert response.status_code == 200, response.text
                if assistant.ltm is not None:
                    assistant.ltm.flush()
    finally:
        agent.set_assistant(None)
        assistant.close()
    spans = [{
        "name": s.name, "trace_id": format(s.context.trace_id, "032x"), "span_id": format(s.context.span_id, "016x"),
        "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
        "attributes": {k: (list(v) if isinstance(v, tuple) else v) for k, v in (s.attributes or {}).items()},
        "status": s.status.status_code.name,
    } for s in exporter.get_finished_spans()]
    data = reader.get_metrics_data()
    names = {m.name: [dict(p.attributes or {}) for p in m.data.data_points]
             for rm in (data.resource_metrics if data else []) for sm in rm.scope_metrics for m in sm.metrics}
    print(json.dumps({"spans": spans, "metrics": names}))


if __name__ == "__main__":
    main()
