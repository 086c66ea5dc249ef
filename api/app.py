"""The FastAPI application: built from a Settings object, so tests can build their own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from api.auth import TokenVerifier
from api.limits import TenantLimits
from api.metrics import MetricsListener
from api.middleware import BodyLimitMiddleware, RequestMiddleware
from api.openai import moderations
from api.openai import router as openai_chat
from api.openapi import openapi_document
from api.policy_headers import PolicyMiddleware
from api.problems import install_handlers
from api.routers import (
    codec,
    conversations,
    erasure,
    identity,
    probes,
    sessions,
    streams,
    training,
    usage,
    websocket,
)
from api.routers import (
    policy as tenant_policy,
)
from api.socket_limits import OpenSockets
from api.tenant_policies import TenantPolicies
from core.clients import Clients
from core.connections import data_converter
from core.policy import load_policy
from core.policy_registry import ActivePolicy
from core.readiness import Readiness, check_all
from core.settings import Settings

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.clients = await Clients.open(settings)
        app.state.active_policy = ActivePolicy(app.state.clients.redis, policy)
        app.state.tenant_policies = TenantPolicies(
            app.state.clients.redis, policy, app.state.active_policy
        )
        app.state.limits = TenantLimits(app.state.clients.redis, settings)
        clients = app.state.clients
        app.state.readiness = Readiness(
            lambda: check_all(clients, settings.readiness_checks), settings.readiness_cache_seconds
        )
        redis = app.state.clients.redis
        metrics = MetricsListener(settings, redis) if settings.metrics_address else None
        try:
            yield
        finally:
            if metrics is not None:
                await metrics.close()
            await app.state.clients.close()

    app = FastAPI(
        title="SLM orchestrator",
        version="0.1.0",
        summary="Durable, moderated conversations with a small language model.",
        lifespan=lifespan,
    )
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.started_at = int(time.time())
    policy = load_policy(settings.policy_file)
    app.state.policy = policy
    # Built eagerly: a missing or unreadable key must stop start-up, not fail the first call.
    app.state.verifier = TokenVerifier(settings)
    app.state.sockets = OpenSockets(settings)
    install_handlers(app)
    app.include_router(probes.router)
    app.include_router(identity.router)
    app.include_router(conversations.router)
    app.include_router(sessions.router)
    app.include_router(erasure.router)
    app.include_router(tenant_policy.router)
    app.include_router(usage.router)
    app.include_router(streams.router)
    app.include_router(openai_chat.router)
    app.include_router(moderations.router)
    app.include_router(websocket.router)
    app.include_router(training.router)
    app.include_router(codec.router)
    app.state.codec = data_converter(settings).payload_codec
    # The middleware added last wraps the others: the request's trace id outermost, so even
    # a 413 has it; then the policy check, which refuses a mismatch before anything starts;
    # then the body limit, which refuses before anything parses the body.
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(PolicyMiddleware)
    # The Temporal UI calls the codec endpoint from the browser, from its own origin.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.codec_cors_origins),
        allow_methods=["POST"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        allow_credentials=True,
    )
    app.add_middleware(RequestMiddleware)
    # Around all of them, the request's span (recorded and exported where the process
    # configured tracing: api/server.py). A streamed reply sends once per token: a span per
    # send would outnumber the turn's own.
    FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"])
    return app
