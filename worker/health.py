"""The worker's HTTP endpoint on ORCH_WORKER_METRICS_ADDRESS: probes and metrics on one port.

- `GET /healthz`: the process lives (touches nothing outside it);
- `GET /readyz`: 200 when every Temporal worker of the process is polling and what it calls
  answers: Temporal and Redis always, the broker for the workflow queue (events), the SLM
  server for the SLM queue; else 503 naming each failing one, as the API's /readyz;
- `GET /metrics`: the Temporal SDK's Prometheus text (the SDK serves it on a loopback port
  of its own; this endpoint relays it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict

import httpx
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client
from temporalio.worker import Worker

from core import readiness
from core.clients import Clients
from core.errors import problem_body
from core.settings import ConfigurationError, Settings


def loopback_address() -> str:
    """A free loopback address for the SDK's own Prometheus endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


class HealthServer(uvicorn.Server):
    """uvicorn inside the worker's event loop; the worker handles SIGTERM itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, temporal: Client, redis: Redis, workers: Sequence[Worker], sdk_metrics: str
) -> AsyncIterator[None]:
    """The endpoint while the block runs: entered before the workers start (so /readyz says
    503 until they poll) and left after they drained (so /healthz answers meanwhile)."""
    host, _, port = settings.worker_metrics_address.rpartition(":")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, int(port)))
    except OSError as error:
        listener.close()
        raise ConfigurationError(
            f"ORCH_WORKER_METRICS_ADDRESS: cannot listen on {host}:{port}: {error.strerror}"
        ) from None
    timeout = httpx.Timeout(30.0, connect=settings.readiness_timeout_seconds)
    async with httpx.AsyncClient(timeout=timeout) as http:
        # The worker follows no stream: its followers are its one Redis client.
        clients = Clients(
            settings=settings, temporal=temporal, redis=redis, http=http, followers=redis
        )
        server = health_server(settings, clients, workers, sdk_metrics)
        task = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            yield
        finally:
            server.should_exit = True
            await task


def health_server(
    settings: Settings, clients: Clients, workers: Sequence[Worker], sdk_metrics: str
) -> HealthServer:
    checks = _checks(settings, [w.task_queue for w in workers])

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        results = await readiness.check_all(clients, checks)
        dependencies = {name: asdict(result) for name, result in results.items()}
        polling = all(worker.is_running for worker in workers)
        dependencies["pollers"] = {"ok": polling, "latency_ms": 0.0}
        failing = [name for name, result in dependencies.items() if not result["ok"]]
        if not failing:
            return JSONResponse({"status": "ready", "dependencies": dependencies})
        body = problem_body(
            503, "not_ready", "Not ready", f"Not answering: {', '.join(failing)}.", ""
        )
        body.update(failing=failing, dependencies=dependencies)
        return JSONResponse(body, status_code=503, media_type="application/problem+json")

    async def metrics(request: Request) -> Response:
        relayed = await clients.http.get(f"http://{sdk_metrics}/metrics")
        return Response(relayed.content, media_type=relayed.headers.get("content-type"))

    app = Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    )
    return HealthServer(uvicorn.Config(app, log_config=None, access_log=False))


def _checks(settings: Settings, queues: list[str]) -> tuple[str, ...]:
    """What this worker calls: events go out from the workflow queue, SLM calls from the SLM
    queue; both need Temporal and Redis."""
    names = ["temporal", "redis"]
    if settings.task_queue in queues:
        names.append("kafka")
    if settings.slm_task_queue in queues:
        names.append("slm")
    return tuple(names)
