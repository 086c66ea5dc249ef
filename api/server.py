"""`orchestrator api`: uvicorn serving the app, with our JSON logging in place of its own."""

from __future__ import annotations

import uvicorn

from api.app import MAX_BODY_BYTES, create_app
from core.settings import Settings
from core.telemetry import configure_tracing


def serve(settings: Settings) -> None:
    # The process's tracing (provider, exporters, client instrumentations) before the app
    # that makes spans.
    configure_tracing("orchestrator-api")
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # keep the JSON handler configure_logging installed
        access_log=False,  # RequestMiddleware logs each request with its trace id
        timeout_graceful_shutdown=10,
        proxy_headers=True,
        # A WebSocket message is held whole before the app sees it: no larger than a body.
        ws_max_size=MAX_BODY_BYTES,
    )
