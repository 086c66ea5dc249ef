"""`orchestrator api`: uvicorn serving the app, with our JSON logging in place of its own."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from core.settings import Settings


def serve(settings: Settings) -> None:
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # keep the JSON handler configure_logging installed
        access_log=False,  # TraceMiddleware logs each request with its trace id
        timeout_graceful_shutdown=10,
        proxy_headers=True,
    )
