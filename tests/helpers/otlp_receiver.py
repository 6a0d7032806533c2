"""An OTLP/HTTP receiver for tests: a real HTTP server on loopback that decodes what a collector would get.

``POST /v1/traces`` bodies are ``ExportTraceServiceRequest`` protobufs (``opentelemetry-proto``, which
the OTLP exporter itself depends on); each span is kept as a plain dict: name, ids, parent, attributes.
``stall`` makes every export hang until the test ends (a slow collector).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.helpers.stand_in import StandInServer


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


class OTLPReceiver(StandInServer):
    def __init__(self, *, stall: bool = False) -> None:
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        self.received = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if stall:
                    receiver.release.wait(60)
                if self.path == "/v1/traces":
                    receiver._keep(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        super().__init__(Handler)

    def _keep(self, request: ExportTraceServiceRequest) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append({
                        "name": span.name, "scope": scope_spans.scope.name,
                        "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                        "parent_id": span.parent_span_id.hex() or None,
                        "attributes": {a.key: _value(a.value) for a in span.attributes},
                        "status": span.status.code,
                    })
        with self.received:
            self.requests += 1
            self.spans.extend(spans)
            self.received.notify_all()

    def wait_for(self, name: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Every span received so far once one named ``name`` has arrived (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.received:
            while not any(s["name"] == name for s in self.spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no span {name!r} in {timeout} s; got {[s['name'] for s in self.spans]}")
                self.received.wait(left)
            return list(self.spans)
