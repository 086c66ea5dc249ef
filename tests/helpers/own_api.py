"""An API of the test's own, with settings it changes, beside the session's stack (the same
Temporal, Redis and broker), served by uvicorn on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from api.app import create_app
from core.settings import Settings
from deploy.services import free_ports


@asynccontextmanager
async def own_api(settings: Settings) -> AsyncIterator[str]:
    """The base URL of an API serving with `settings` while the block runs."""
    port = free_ports(1)[0]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()  # it could not start: say why
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
