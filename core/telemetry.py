"""JSON logs and tracing, shared by the API, the worker and the launcher.

Every log line carries `trace_id`, `session_id` and `tenant` from context variables, so a
line written anywhere inside a request is tied to it without passing loggers around.
"""

from __future__ import annotations

import logging
import os
import sys
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from temporalio import activity

from core.settings import ConfigurationError

trace_id_var: ContextVar[str] = ContextVar("trace_id", default="")
session_id_var: ContextVar[str] = ContextVar("session_id", default="")
tenant_var: ContextVar[str] = ContextVar("tenant", default="")


class _ContextFilter(logging.Filter):
    """Stamps each record with the ids that join it to its turn: the trace and span ids of
    the active span (else the request's trace id), and the session and tenant, from the
    API's request or from the workflow a worker's record comes from."""

    def filter(self, record: logging.LogRecord) -> bool:
        span = trace.get_current_span().get_span_context()
        trace_id = format(span.trace_id, "032x") if span.is_valid else trace_id_var.get()
        tenant, session_id = _workflow_owner(record)
        record.trace_id = getattr(record, "trace_id", None) or trace_id
        record.span_id = getattr(record, "span_id", None) or (
            format(span.span_id, "016x") if span.is_valid else ""
        )
        record.session_id = (
            getattr(record, "session_id", None) or session_id_var.get() or session_id
        )
        record.tenant = getattr(record, "tenant", None) or tenant_var.get() or tenant
        return True


def _workflow_owner(record: logging.LogRecord) -> tuple[str, str]:
    """(tenant, session id) of the workflow behind a worker's record, from its id:
    `conversation:<tenant>:<session id>` or `training-mode:<tenant>`."""
    info = getattr(record, "temporal_workflow", None) or getattr(record, "temporal_activity", None)
    workflow_id = str(info.get("workflow_id", "")) if isinstance(info, dict) else ""
    if not workflow_id and activity.in_activity():
        workflow_id = activity.info().workflow_id or ""
    kind, _, owner = workflow_id.partition(":")
    tenant, _, session_id = owner.partition(":")
    return (tenant, session_id) if kind in ("conversation", "training-mode") else ("", "")


def configure_logging(level: str = "INFO", service: str = "orchestrator") -> None:
    """Send every logger, uvicorn's and the SDK's included, as JSON lines to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(
        JsonFormatter(
            "{levelname}{message}{name}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"service": service},
            timestamp=True,  # ISO 8601, UTC, milliseconds, under "timestamp"
            reserved_attrs=[*RESERVED_ATTRS, "taskName", "color_message"],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our own middleware logs each request with its trace id; uvicorn's access line has none.
    logging.getLogger("uvicorn.access").disabled = True
    # One line per outgoing HTTP call (every readiness probe, every SLM call: the OpenAI SDK
    # speaks httpx2) is noise at INFO; the call's span holds it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)


def configure_tracing(service: str) -> trace.Tracer:
    """Install the SDK tracer provider once per process and return a tracer for `service`.

    Spans are created and propagated (W3C traceparent) everywhere: by Temporal's interceptor,
    the API's FastAPI instrumentation (see api/app.py), and here, once, the client
    instrumentations of what a turn calls: httpx (the SLM, with `traceparent` sent to it),
    Redis, and the Kafka producer (a producer span, `traceparent` in the record's headers).
    They are exported only when the standard OpenTelemetry environment asks for it (see
    `span_exporters`); `OTEL_SERVICE_NAME` overrides `service`.
    """
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        name = os.environ.get("OTEL_SERVICE_NAME") or service
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        for exporter in span_exporters():
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        for instrumentor in (
            HTTPXClientInstrumentor(),
            RedisInstrumentor(),
            AIOKafkaInstrumentor(),
        ):
            instrumentor.instrument()
    return trace.get_tracer(service)


def span_exporters() -> list[SpanExporter]:
    """The exporters `OTEL_TRACES_EXPORTER` names (`otlp`, `console`, `none`); `otlp` alone
    when it is unset but an OTLP endpoint is set; none otherwise. The OTLP exporter speaks
    `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` (`http/protobuf`, the default, or `grpc`) and
    reads its endpoint, headers, certificates and timeout from the standard variables."""
    endpoint = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    exporters: list[SpanExporter] = []
    for name in names or (["otlp"] if endpoint else []):
        if name == "none":
            return []
        if name == "otlp":
            exporters.append(_otlp_exporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}; use otlp, console or none"
            )
    return exporters


def _otlp_exporter() -> SpanExporter:
    protocol = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol in ("", "http/protobuf"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    raise ConfigurationError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; use http/protobuf or grpc"
    )


def _env(*names: str) -> str:
    return next((os.environ[name] for name in names if os.environ.get(name)), "")


def current_traceparent() -> str:
    """The W3C `traceparent` of the active span, to carry into workflows and events."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "")


def current_trace_id() -> str:
    """The 32-hex trace id of the active span, or of the context variable set by the API."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return format(context.trace_id, "032x")
    return trace_id_var.get()
