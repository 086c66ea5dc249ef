"""Liveness, readiness and metrics: unauthenticated, for the platform that runs us."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ClientsDep
from api.metrics import DEPENDENCY_READY, refresh_training_state
from api.openapi import problems
from api.problems import problem
from core import readiness
from core.errors import NotFound

router = APIRouter(tags=["probes"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency does not answer"}})
async def readyz(request: Request, clients: ClientsDep) -> Response:
    checks: readiness.Readiness = request.app.state.readiness
    results = await checks.results()
    for name, result in results.items():
        DEPENDENCY_READY.labels(dependency=name).set(1 if result.ok else 0)
    detail = clients.settings.readiness_error_detail
    dependencies = {name: result.public(detail) for name, result in results.items()}
    failing = [name for name, result in results.items() if not result.ok]
    if failing:
        return problem(
            503,
            "not_ready",
            "Not ready",
            f"Not answering: {', '.join(failing)}.",
            failing=failing,
            dependencies=dependencies,
        )
    return JSONResponse({"status": "ready", "dependencies": dependencies})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "Prometheus text exposition format"},
        404: {**problems(404)[404], "description": "served on ORCH_METRICS_ADDRESS instead"},
    },
)
async def metrics(clients: ClientsDep) -> Response:
    if clients.settings.metrics_address:
        raise NotFound("Metrics are served on ORCH_METRICS_ADDRESS, not on the public port.")
    await refresh_training_state(clients.redis, clients.settings.readiness_timeout_seconds)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
