"""Probes: /healthz, /readyz against the real dependencies, /metrics."""

from __future__ import annotations

import asyncio

import httpx
import pytest

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
