"""Probes: /healthz, /readyz against the real dependencies, /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from core.readiness import CheckResult, Readiness
from core.settings import Settings
from deploy.stack import INFRASTRUCTURE, EmbeddedStack


async def _readyz_until(api: httpx.AsyncClient, status: int, attempts: int = 60) -> httpx.Response:
    """Poll /readyz until it answers `status` (a dependency may take a moment to be seen)."""
    response = await api.get("/readyz")
    for _ in range(attempts):
        if response.status_code == status:
            break
        await asyncio.sleep(0.5)
        response = await api.get("/readyz")
    return response


async def test_healthz_answers_without_token(api: httpx.AsyncClient) -> None:
    response = await api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_lists_every_dependency_with_latency(api: httpx.AsyncClient) -> None:
    response = await api.get("/readyz")
    assert response.status_code == 200, response.text
    dependencies = response.json()["dependencies"]
    assert set(dependencies) == set(INFRASTRUCTURE)
    for name, result in dependencies.items():
        assert result["ok"] is True, name
        assert isinstance(result["latency_ms"], float) and result["latency_ms"] >= 0


@pytest.mark.parametrize("name", INFRASTRUCTURE)
async def test_readyz_names_a_stopped_dependency_then_recovers(
    stack: EmbeddedStack, api: httpx.AsyncClient, name: str
) -> None:
    await stack.stop((name,))
    try:
        response = await _readyz_until(api, 503)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["failing"] == [name]
        assert name in body["detail"]
        assert body["dependencies"][name]["ok"] is False
        # The kind of failure, never where the dependency lives.
        assert body["dependencies"][name]["error"].isidentifier(), body
        assert "127.0.0.1" not in response.text and "localhost" not in response.text
        others = set(INFRASTRUCTURE) - {name}
        assert all(body["dependencies"][other]["ok"] for other in others)
    finally:
        await stack.start((name,))
    response = await _readyz_until(api, 200)
    assert response.status_code == 200, response.text


async def test_metrics_exposes_request_counters(api: httpx.AsyncClient) -> None:
    await api.get("/healthz")
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'orchestrator_requests_total{decision="allowed",route="/healthz"}' in response.text
    assert (
        'orchestrator_request_duration_seconds_bucket{le="0.005",route="/healthz"}' in response.text
    )


@contextmanager
def _frozen(stack: EmbeddedStack, name: str) -> Iterator[None]:
    """The service's process stopped (SIGSTOP): connections hang instead of failing."""
    pid = stack.pids()[name]
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_healthz_answers_while_redis_hangs(stack: EmbeddedStack, api_url: str) -> None:
    with _frozen(stack, "redis"):
        await asyncio.sleep(1.5)  # past the cached policy identity
        # Within Kubernetes' default probe timeout (1 s), while a Redis call would take 2 s.
        async with httpx.AsyncClient(base_url=api_url, timeout=1.0) as client:
            response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["x-policy-version"]


async def test_readyz_asks_only_the_dependencies_it_is_told(
    stack: EmbeddedStack, api: httpx.AsyncClient
) -> None:
    original = dict(stack.environment)
    await stack.stop(("api",))
    stack.environment = {**original, "ORCH_READINESS_CHECKS": json.dumps(["temporal", "redis"])}
    await stack.start(("api",))
    try:
        with _frozen(stack, "slm"):
            response = await api.get("/readyz")
        assert response.status_code == 200, response.text
        assert set(response.json()["dependencies"]) == {"temporal", "redis"}
    finally:
        await stack.stop(("api",))
        stack.environment = original
        await stack.start(("api",))


async def test_the_worker_serves_probes_and_metrics_on_one_port(
    stack: EmbeddedStack, settings: Settings
) -> None:
    base = f"http://{settings.worker_metrics_address}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as worker:
        ready = await worker.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["dependencies"]) == {"temporal", "redis", "kafka", "slm", "pollers"}
        metrics = await worker.get("/metrics")
        assert metrics.status_code == 200
        assert "temporal_worker_task_slots_available" in metrics.text
        with _frozen(stack, "slm"):
            not_ready = await worker.get("/readyz")
            async with httpx.AsyncClient(base_url=base, timeout=1.0) as probe:
                alive = await probe.get("/healthz")
    assert alive.status_code == 200
    assert not_ready.status_code == 503
    assert not_ready.headers["content-type"] == "application/problem+json"
    assert not_ready.json()["failing"] == ["slm"]


async def test_readiness_runs_one_round_of_checks_per_interval() -> None:
    async def checks() -> dict[str, CheckResult]:
        await asyncio.sleep(0.05)
        return {"redis": CheckResult(True, 1.0)}

    shared = Readiness(checks, max_age=60)
    answers = await asyncio.gather(*(shared.results() for _ in range(50)))
    assert shared.rounds == 1 and all(a == {"redis": CheckResult(True, 1.0)} for a in answers)
    every_time = Readiness(checks, max_age=0)
    for _ in range(3):
        await every_time.results()
    assert every_time.rounds == 3


def test_a_failure_is_shown_by_its_kind_unless_detail_is_asked() -> None:
    failed = CheckResult(False, 3.0, "Connect call failed ('10.1.2.3', 6379)", "OSError")
    assert failed.public(detail=False) == {"ok": False, "latency_ms": 3.0, "error": "OSError"}
    assert "10.1.2.3" in str(failed.public(detail=True)["error"])
