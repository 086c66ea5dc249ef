"""Spans leave the API and the worker over the real OTLP protocols (HTTP and gRPC) when the
standard OpenTelemetry environment names an endpoint (docs/operations.md, Traces).

A small OTLP receiver runs in the test; the API and the worker are restarted with
`OTEL_EXPORTER_OTLP_ENDPOINT` pointing at it, one turn is taken, and both processes' spans
of that turn arrive under the trace id of the `traceparent` the client sent, which is also
the `X-Trace-Id` it got back.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from deploy.stack import EmbeddedStack

Span = tuple[str, str, str]  # service name, trace id (hex), span name


class Spans:
    """What a receiver was sent, from whichever thread the server answers on."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()

    def add(self, request: ExportTraceServiceRequest) -> None:
        found = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                found += [
                    (attributes.get("service.name", ""), s.trace_id.hex(), s.name)
                    for s in scope_spans.spans
                ]
        with self._lock:
            self._spans += found

    def of_trace(self, trace_id: str) -> set[tuple[str, str]]:
        with self._lock:
            return {(service, name) for service, t, name in self._spans if t == trace_id}


class _HttpHandler(BaseHTTPRequestHandler):
    spans: Spans

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            self.spans.add(ExportTraceServiceRequest.FromString(body))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _GrpcTraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, spans: Spans) -> None:
        self.spans = spans

    def Export(
        self, request: ExportTraceServiceRequest, context: Any
    ) -> ExportTraceServiceResponse:
        self.spans.add(request)
        return ExportTraceServiceResponse()


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, Spans]]:
    spans = Spans()
    handler = type("Handler", (_HttpHandler,), {"spans": spans})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", spans
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[str, Spans]]:
    spans = Spans()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_GrpcTraceService(spans), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", spans
    finally:
        server.stop(grace=None)


async def _restart_product(stack: EmbeddedStack, environment: dict[str, str]) -> None:
    await stack.stop(("api", "worker"))
    stack.environment = environment
    await stack.start(("worker", "api"))


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_spans_of_both_processes_reach_an_otlp_endpoint(
    stack: EmbeddedStack, api_url: str, token: Callable[..., str], protocol: str,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    fixture = "grpc_receiver" if protocol == "grpc" else "http_receiver"
    endpoint, spans = request.getfixturevalue(fixture)
    original = dict(stack.environment)
    exporting = {
        **original,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        # Batches leave every 100 ms instead of every 5 s, so the test does not wait.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    await _restart_product(stack, exporting)
    try:
        # The caller's own trace, continued from the request to the event.
        trace_id = uuid.uuid4().hex
        async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
            response = await client.post(
                "/v1/conversation/step",
                json={"session_id": f"s-{uuid.uuid4().hex[:12]}", "message": "Name a fruit."},
                headers={
                    "Authorization": f"Bearer {token('acme', 'user')}",
                    "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
                },
            )
        assert response.status_code == 200, response.text
        assert response.headers["x-trace-id"] == trace_id
        wanted = {
            ("orchestrator-api", "POST /v1/conversation/step"),  # named by route template
            ("orchestrator-api", "StartUpdateWithStartWorkflow:ConversationWorkflow"),
            ("orchestrator-worker", "RunWorkflow:ConversationWorkflow"),
            ("orchestrator-worker", "RunActivity:slm.complete"),
            ("orchestrator-worker", f"chat {stack.settings.slm_model}"),  # the SLM call
            ("orchestrator-worker", "GET"),  # Redis: the training lease, in the SLM activity
            ("orchestrator-worker", "conversation.events send"),  # the Kafka producer
        }
        names: set[tuple[str, str]] = set()
        for _ in range(100):
            names = spans.of_trace(trace_id)
            if wanted <= names:
                break
            await asyncio.sleep(0.1)
        assert wanted <= names, sorted(names)
    finally:
        await _restart_product(stack, original)
