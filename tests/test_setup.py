"""`orchestrator setup` against real servers: a Temporal dev server started bare (no
namespace of ours, no search attributes) and the embedded broker, with topics of its own.
A dry run changes nothing; a run creates everything; a second run finds nothing to do.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sysconfig
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from core import search_attributes
from core.settings import Settings
from deploy.services import free_ports

RunCli = Callable[..., subprocess.CompletedProcess[str]]
NAMESPACE = "orchestrator-setup"


@pytest_asyncio.fixture
async def bare_temporal(tmp_path: Path) -> AsyncIterator[str]:
    """A Temporal dev server with only its `default` namespace, stopped by its pid."""
    port = free_ports(1)[0]
    argv = [
        str(Path(sysconfig.get_path("scripts")) / "temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--headless",
        "--log-level",
        "error",
    ]
    with (tmp_path / "temporal.log").open("w") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=log, stderr=log, start_new_session=True
        )
    address = f"127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                await Client.connect(address)
                break
            except RuntimeError:
                await asyncio.sleep(0.25)
        yield address
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def _attributes(address: str) -> dict[str, int]:
    client = await Client.connect(address)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=NAMESPACE)
    )
    return dict(listed.custom_attributes)


async def test_setup_creates_what_is_missing_once(
    run_cli: RunCli, bare_temporal: str, settings: Settings
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topics = (f"setup-events-{suffix}", f"setup-audit-{suffix}")
    env = {
        "ORCH_TEMPORAL_ADDRESS": bare_temporal,
        "ORCH_TEMPORAL_NAMESPACE": NAMESPACE,
        "ORCH_TEMPORAL_RETENTION_DAYS": "7",
        "ORCH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "ORCH_CONVERSATION_EVENTS_TOPIC": topics[0],
        "ORCH_TRAINING_AUDIT_TOPIC": topics[1],
        # The payload codec's keys, as a deployment mounts them: the stack's.
        "ORCH_CODEC_KEY_FILE": str(settings.codec_key_path),
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        dry = run_cli("setup", "--dry-run", env=env, timeout=120)
        assert dry.returncode == 0, dry.stderr
        changes = 1 + len(search_attributes.ALL) + len(topics)  # the namespace, then each
        assert f"{changes} things would change." in dry.stdout, dry.stdout
        assert not set(topics) & set(await admin.list_topics())

        first = run_cli("setup", env=env, timeout=120)
        assert first.returncode == 0, first.stderr
        assert f"namespace {NAMESPACE}: absent; register it, retention 7 days" in first.stdout
        assert first.stdout.count("absent; create it") == changes - 1, first.stdout
        assert f"{changes} things changed." in first.stdout

        client = await Client.connect(bare_temporal)
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=NAMESPACE)
        )
        assert described.config.workflow_execution_retention_ttl.ToTimedelta() == timedelta(days=7)
        attributes = await _attributes(bare_temporal)
        for key in search_attributes.ALL:
            assert attributes[key.name] == int(key.indexed_value_type), key.name
        assert IndexedValueType.Name(attributes["TurnCount"]) == "INDEXED_VALUE_TYPE_INT"
        assert set(topics) <= set(await admin.list_topics())

        second = run_cli("setup", env=env, timeout=120)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip().endswith("Nothing to change."), second.stdout
        assert "would" not in second.stdout and "absent" not in second.stdout
    finally:
        await admin.close()
