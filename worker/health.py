"""The worker's HTTP endpoint on ORCH_WORKER_METRICS_ADDRESS: probes and metrics on one port.

- `GET /healthz`: the process lives (touches nothing outside it);
- `GET /readyz`: 200 when every Temporal worker of the process is polling and what it calls
  answers: Temporal and Redis always, the broker for the workflow queue (events), the SLM
  server for the SLM queue; else 503 naming each failing one, as the API's /readyz;
- `GET /metrics`: the Temporal SDK's Prometheus text (the SDK serves it on a loopback port
  of its own; this endpoint relays it).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from dataclasses import asdict

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.worker import Worker

from core import readiness
from core.clients import Clients
from core.errors import problem_body
from core.settings import Settings


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
        body = problem_body(503, "not_ready", "Not ready", f"Not answering: {', '.join(failing)}.", "")  # fmt: skip
        body.update(failing=failing, dependencies=dependencies)
        return JSONResponse(body, status_code=503, media_type="application/problem+json")

    async def metrics(request: Request) -> Response:
        relayed = await clients.http.get(f"http://{sdk_metrics}/metrics")
        return Response(relayed.content, media_type=relayed.headers.get("content-type"))

    app = Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    )
    host, _, port = settings.worker_metrics_address.rpartition(":")
    config = uvicorn.Config(app, host=host, port=int(port), log_config=None, access_log=False)
    return HealthServer(config)


def _checks(settings: Settings, queues: list[str]) -> tuple[str, ...]:
    """What this worker calls: events go out from the workflow queue, SLM calls from the SLM
    queue; both need Temporal and Redis."""
    names = ["temporal", "redis"]
    if settings.task_queue in queues:
        names.append("kafka")
    if settings.slm_task_queue in queues:
        names.append("slm")
    return tuple(names)
