"""Pure ASGI middleware (no BaseHTTPMiddleware, so streamed responses pass untouched).

OpenTelemetry's FastAPI instrumentation wraps them all: it opens the request's server span
(named by route template, continuing an incoming `traceparent`). Inside it,
`RequestMiddleware` gives the request that span's trace id, stamps `X-Trace-Id` on every
response, turns anything that escaped the app into a problem+json 500, and records the
request metrics and log line.
`BodyLimitMiddleware` refuses bodies over the limit before anything parses them.
"""

from __future__ import annotations

import logging
import time
import uuid

from opentelemetry import trace
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import REQUEST_DURATION, REQUESTS, decision_for
from api.problems import from_error, problem
from core.errors import OrchestratorError, PayloadTooLarge
from core.telemetry import session_id_var, tenant_var, trace_id_var

log = logging.getLogger("orchestrator.api")


class RequestMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        context = trace.get_current_span().get_span_context()
        trace_id = format(context.trace_id, "032x") if context.is_valid else uuid.uuid4().hex
        tokens = (trace_id_var.set(trace_id), session_id_var.set(""), tenant_var.set(""))
        try:
            await self._traced(scope, receive, send, trace_id)
        finally:
            trace_id_var.reset(tokens[0])
            session_id_var.reset(tokens[1])
            tenant_var.reset(tokens[2])

    async def _traced(self, scope: Scope, receive: Receive, send: Send, trace_id: str) -> None:
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_trace_id(message: Message) -> None:
            nonlocal status, response_started
            # An HTTP answer, a WebSocket's handshake refused (an HTTP answer too), or accepted.
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)["X-Trace-Id"] = trace_id
            elif message["type"] == "websocket.accept":
                response_started = True
                status = 101
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-trace-id", trace_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace_id)
        except Exception as error:  # the last line of defence: answer, never drop the request
            if isinstance(error, OrchestratorError):
                response = from_error(error, scope["path"])
            else:
                log.exception("unhandled error on %s %s", _method(scope), scope["path"])
                response = problem(
                    500,
                    "internal_error",
                    "Internal error",
                    "The server failed to handle this request; report the trace id.",
                    path=scope["path"],
                )
            if not response_started:
                await response(scope, receive, send_with_trace_id)
        finally:
            route = _route(scope)
            decision = scope.get("state", {}).get("decision") or decision_for(status)
            elapsed = time.perf_counter() - started
            REQUESTS.labels(route=route, decision=decision).inc()
            REQUEST_DURATION.labels(route=route).observe(elapsed)
            log.info(
                "%s %s %s",
                _method(scope),
                scope["path"],
                status,
                extra={"status": status, "route": route, "duration_ms": round(elapsed * 1000, 2)},
            )


def _method(scope: Scope) -> str:
    """The request's method; a WebSocket's log line (when it closes) says WEBSOCKET."""
    return str(scope.get("method", "WEBSOCKET"))


def _route(scope: Scope) -> str:
    """The route template a request matched (one name for every session id)."""
    return str(getattr(scope.get("route"), "path", "<unmatched>"))


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large()
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's body reading untouched.
                    raise HTTPException(413, self._too_large().detail)
            return message

        await self.app(scope, counting_receive, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The request body is larger than {self.max_bytes // 1024} KiB; send less.",
            limit_bytes=self.max_bytes,
        )
