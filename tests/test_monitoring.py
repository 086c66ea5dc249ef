"""The monitoring in deploy/monitoring/: alert rules that Prometheus accepts, each alert
firing in its unit test and documented in a runbook, and every metric that the rules and
the dashboard read exported by the API or the worker (docs/operations.md, Alerts)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from api.app import create_app
from core.settings import Settings
from deploy.services import free_ports

MONITORING = Path(__file__).parent.parent / "deploy" / "monitoring"
RUNBOOKS = Path(__file__).parent.parent / "docs" / "operations.md"
METRIC = re.compile(r"\b(?:orchestrator_\w+|training_mode_state|temporal_\w+)\b")


def _spec() -> dict[str, Any]:
    rule: dict[str, Any] = yaml.safe_load((MONITORING / "prometheus-rule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    spec: dict[str, Any] = rule["spec"]
    return spec


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in _spec()["groups"] for rule in group["rules"] if "alert" in rule]


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's prometheus package (make test does)")
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """The rule file's spec as plain Prometheus rules, beside the alerts' unit tests."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_spec()))
    shutil.copy(MONITORING / "alerts.test.yaml", tmp_path)
    return tmp_path


def test_prometheus_accepts_the_rules(rules_dir: Path) -> None:
    result = _promtool("check", "rules", "rules.yaml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_its_unit_test(rules_dir: Path) -> None:
    tests = yaml.safe_load((rules_dir / "alerts.test.yaml").read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert firing == {alert["alert"] for alert in _alerts()}
    result = _promtool("test", "rules", "alerts.test.yaml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_runbook() -> None:
    headings = {
        line.removeprefix("### ").strip()
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("### ")
    }
    for alert in _alerts():
        name = alert["alert"]
        assert name in headings, f"docs/operations.md has no runbook for {name}"
        assert alert["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"


def _sample_names(text: str) -> set[str]:
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def test_every_metric_the_rules_and_dashboard_read_is_exported(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    headers = {"Authorization": f"Bearer {token('acme', 'user')}"}
    step = {"session_id": f"s-{uuid.uuid4().hex[:12]}", "message": "Name a colour."}
    assert (await api.post("/v1/conversation/step", json=step, headers=headers)).status_code == 200
    streamed = {"session_id": f"s-{uuid.uuid4().hex[:12]}", "message": "Name a colour."}
    async with api.stream("POST", "/v1/chat/stream", json=streamed, headers=headers) as response:
        assert response.status_code == 200
        async for _ in response.aiter_lines():
            pass
    assert (await api.get("/readyz")).status_code == 200
    exported = _sample_names((await api.get("/metrics")).text)
    async with httpx.AsyncClient(timeout=10) as client:
        worker = await client.get(f"http://{settings.worker_metrics_address}/metrics")
    exported |= _sample_names(worker.text)

    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    expressions += [alert["expr"] for alert in _alerts()]
    read = {name for expr in expressions for name in METRIC.findall(expr)}
    assert read, "no metric found in the rules and the dashboard"
    assert read <= exported, f"read but not exported: {sorted(read - exported)}"


async def test_metrics_move_off_the_public_port_when_asked(
    settings: Settings, api_url: str, token: Callable[..., str]
) -> None:
    port, metrics_port = free_ports(2)
    apart = settings.model_copy(update={"metrics_address": f"127.0.0.1:{metrics_port}"})
    server = uvicorn.Server(
        uvicorn.Config(create_app(apart), host="127.0.0.1", port=port, log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(timeout=10) as client:
            enable = await client.post(
                f"http://127.0.0.1:{port}/v1/training/enable",
                json={"ttl_seconds": 60, "reason": "metrics apart"},
                headers={"Authorization": f"Bearer {token('metrics-apart', 'admin')}"},
            )
            assert enable.status_code == 200, enable.text
            public = await client.get(f"http://127.0.0.1:{port}/metrics")
            assert public.status_code == 404
            assert public.headers["content-type"] == "application/problem+json"
            assert "ORCH_METRICS_ADDRESS" in public.json()["detail"]
            lease = 'training_mode_state{tenant="metrics-apart"} 1.0'
            for _ in range(100):  # the gauge is refreshed every few seconds there
                scraped = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
                assert scraped.status_code == 200
                if lease in scraped.text:
                    break
                await asyncio.sleep(0.1)
        assert lease in scraped.text
        assert (
            'orchestrator_requests_total{decision="allowed",route="/v1/training/enable"}'
            in scraped.text
        )
    finally:
        server.should_exit = True
        await serving
        async with httpx.AsyncClient(timeout=10) as client:
            await client.post(
                f"{api_url}/v1/training/disable",
                json={"reason": "test over"},
                headers={"Authorization": f"Bearer {token('metrics-apart', 'admin')}"},
            )
