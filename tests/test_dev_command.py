"""`orchestrator dev`: starts everything, answers, stops every child, keeps state across runs."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from redis.asyncio import Redis
from temporalio.client import Client, WorkflowExecutionStatus

from deploy.services import DevPorts

#: Each test runs `orchestrator dev`, which starts every embedded server.
pytestmark = pytest.mark.servers

EXPECTED_KEYS = {
    "api_url",
    "temporal_address",
    "temporal_ui_url",
    "kafka_bootstrap",
    "redis_url",
    "slm_base_url",
    "data_dir",
}


def _flags(data_dir: Path) -> list[str]:
    """--data-dir and a free port for every server."""
    ports = DevPorts.free()
    return [
        "--data-dir",
        str(data_dir),
        "--api-port",
        str(ports.api),
        "--temporal-port",
        str(ports.temporal),
        "--temporal-ui-port",
        str(ports.temporal_ui),
        "--kafka-port",
        str(ports.kafka),
        "--redis-port",
        str(ports.redis),
        "--slm-port",
        str(ports.slm),
        "--worker-metrics-port",
        str(ports.worker_metrics),
    ]


@asynccontextmanager
async def running_dev(
    data_dir: Path, *extra: str
) -> AsyncIterator[tuple[dict[str, str], list[psutil.Process]]]:
    """Run `orchestrator dev` until it has written dev.json; stop it with Ctrl-C (SIGINT) after.

    Yields dev.json and every process it started, and checks on the way out that the
    launcher exited 0 and that none of those processes is still alive.
    """
    launcher = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator",
        "dev",
        *_flags(data_dir),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    dev_file = data_dir / "dev.json"
    children: list[psutil.Process] = []
    try:
        async with asyncio.timeout(240):
            while not dev_file.exists():
                assert launcher.returncode is None, (await launcher.stderr.read()).decode()  # type: ignore[union-attr]
                await asyncio.sleep(0.25)
        children = psutil.Process(launcher.pid).children(recursive=True)
        yield json.loads(dev_file.read_text()), children
    finally:
        launcher.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            stdout, stderr = await launcher.communicate()
    assert launcher.returncode == 0, stderr.decode()[-2000:]
    printed = stdout.decode()
    assert "stopped." in printed
    # Progress while it waited: each server named as it started and as it became ready.
    assert "starting temporal, kafka, redis, slm ..." in printed, printed
    for name in ("temporal", "kafka", "redis", "slm"):
        assert re.search(rf"^  {name} ready \(\d+\.\ds\)$", printed, re.MULTILINE), printed
    alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline()[:3] for p in alive]
    assert not dev_file.exists()


async def test_dev_runs_everything_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    async with running_dev(tmp_path) as (dev, children):
        assert set(dev) == EXPECTED_KEYS
        assert len(children) >= 6  # temporal, broker, redis, slm, worker, api
        async with httpx.AsyncClient(timeout=10) as http:
            ready = await http.get(f"{dev['api_url']}/readyz")
            assert ready.status_code == 200, ready.text
            ui = await http.get(dev["temporal_ui_url"])
            assert ui.status_code == 200 and "<html" in ui.text.lower()
            docs = await http.get(f"{dev['api_url']}/docs")
            assert docs.status_code == 200
            models = await http.get(f"{dev['slm_base_url']}/models")
            assert models.status_code == 200


async def test_restart_keeps_temporal_history_and_redis_keys(tmp_path: Path) -> None:
    workflow_id = f"kept-{uuid.uuid4()}"
    async with running_dev(tmp_path, "--services") as (dev, _):
        client = await Client.connect(dev["temporal_address"])
        # No worker serves this queue: the workflow simply stays open, in the SQLite store.
        await client.start_workflow(
            "NobodyRunsThis", id=workflow_id, task_queue=f"idle-{uuid.uuid4()}"
        )
        redis = Redis.from_url(dev["redis_url"])
        await redis.set("kept-key", "kept-value")
        await redis.aclose()

    async with running_dev(tmp_path, "--services") as (dev, _):
        client = await Client.connect(dev["temporal_address"])
        description = await client.get_workflow_handle(workflow_id).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        assert description.workflow_type == "NobodyRunsThis"
        redis = Redis.from_url(dev["redis_url"])
        assert await redis.get("kept-key") == b"kept-value"
        await redis.aclose()


async def test_search_attributes_of_the_interface_are_registered(temporal: Client) -> None:
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    listed = await temporal.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=temporal.namespace)
    )
    registered = {
        name: IndexedValueType.Name(kind).removeprefix("INDEXED_VALUE_TYPE_").title()
        for name, kind in listed.custom_attributes.items()
    }
    interface = {
        "Tenant": "Keyword",
        "SessionId": "Keyword",
        "TurnCount": "Int",
        "TrainingMode": "Bool",
        "PolicyVersion": "Keyword",
        "LastVerdict": "Keyword",
    }
    assert {name: registered.get(name) for name in interface} == interface


async def test_a_server_that_dies_stops_dev_named_with_what_to_do(tmp_path: Path) -> None:
    launcher = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "orchestrator", "dev", "--services", *_flags(tmp_path)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    dev_file = tmp_path / "dev.json"
    async with asyncio.timeout(240):
        while not dev_file.exists():
            assert launcher.returncode is None, (await launcher.stderr.read()).decode()  # type: ignore[union-attr]
            await asyncio.sleep(0.25)
    children = psutil.Process(launcher.pid).children(recursive=True)
    [slm] = [p for p in children if "deploy.slm_server" in p.cmdline()]
    # How a llama.cpp built for another CPU ends at its first completion.
    slm.send_signal(signal.SIGSEGV)
    async with asyncio.timeout(60):
        stdout, stderr = await launcher.communicate()

    assert launcher.returncode == 1
    printed, said = stdout.decode(), stderr.decode()
    assert re.search(r"^slm: llama\.cpp CPU variant \w+ \(", printed, re.MULTILINE), printed
    log = tmp_path / "logs" / "slm.log"
    assert f"orchestrator: slm (pid {slm.pid}) was killed by SIGSEGV; see {log}" in said, said
    assert "rebuild it with `make slm-rebuild`" in said
    assert "stopping ..." in printed and "stopped." in printed
    alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline()[:3] for p in alive]
    assert not dev_file.exists()
