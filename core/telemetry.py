"""JSON logs and tracing, shared by the API, the worker and the launcher.

Every log line carries `trace_id`, `session_id` and `tenant` from context variables, so a
line written anywhere inside a request is tied to it without passing loggers around.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

trace_id_var: ContextVar[str] = ContextVar("trace_id", default="")
session_id_var: ContextVar[str] = ContextVar("session_id", default="")
tenant_var: ContextVar[str] = ContextVar("tenant", default="")


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = getattr(record, "trace_id", None) or trace_id_var.get()
        record.session_id = getattr(record, "session_id", None) or session_id_var.get()
        record.tenant = getattr(record, "tenant", None) or tenant_var.get()
        return True


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
    # One line per outgoing HTTP call (every readiness probe) is noise at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def configure_tracing(service: str) -> trace.Tracer:
    """Install the SDK tracer provider once per process and return a tracer for `service`.

    Spans are created and propagated (W3C traceparent) everywhere; exporting them is left to
    the standard OTEL_* environment of an exporter the operator installs.
    """
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(
            TracerProvider(resource=Resource.create({"service.name": service}))
        )
    return trace.get_tracer(service)


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
