"""Training mode keeps its promises through failures: Redis away, a worker killed mid-enable,
continue-as-new (docs/interface.md, section 4 "Training mode", section 5)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Callable

import httpx
from redis.asyncio import Redis
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from core.redis_keys import fence_key, lock_key
from core.settings import Settings
from deploy.stack import EmbeddedStack
from tests.helpers.activities_in_flight import wait_until_started
from tests.helpers.kafka_records import records_for_key
from workflows.training_mode.types import EnableRequest, TrainingSettings, TrainingState
from workflows.training_mode.workflow import TrainingModeWorkflow


def _tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _admin(token: Callable[..., str], tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(tenant, 'admin', subject='alice')}"}


async def test_redis_unreachable_refuses_enable_and_changes_nothing(
    stack: EmbeddedStack, api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    tenant = _tenant()
    enable = {"ttl_seconds": 120, "reason": "collect examples"}
    await stack.stop(("redis",))
    try:
        refused = await api.post("/v1/training/enable", json=enable, headers=_admin(token, tenant))
        state = await api.get("/v1/training", headers=_admin(token, tenant))
    finally:
        await stack.start(("redis",))
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "dependency_unavailable"
    assert refused.json()["dependency"] == "redis" and "Retry" in refused.json()["detail"]
    assert state.json()["enabled"] is False and state.json()["fence"] == 0

    enabled = await api.post("/v1/training/enable", json=enable, headers=_admin(token, tenant))
    assert enabled.status_code == 200 and enabled.json()["fence"] == 1
    # In order per tenant: an event from the refused enable would come before this one.
    events = await records_for_key(
        settings.kafka_bootstrap, settings.training_audit_topic, tenant, bool
    )
    assert (events[0]["type"], events[0]["data"]["fence"]) == ("training.mode.enabled", 1)
    await api.post("/v1/training/disable", json={}, headers=_admin(token, tenant))


async def test_worker_killed_during_enable_leaves_lock_state_and_one_event_agreeing(
    stack: EmbeddedStack,
    api_url: str,
    token: Callable[..., str],
    temporal: Client,
    settings: Settings,
    redis: Redis,
) -> None:
    tenant = _tenant()
    # Redis holds writes for 3 s, so the acquire is surely in flight when the worker dies.
    await redis.execute_command("CLIENT", "PAUSE", 3000, "WRITE")
    async with httpx.AsyncClient(base_url=api_url, timeout=120) as api:
        enable = asyncio.create_task(
            api.post(
                "/v1/training/enable",
                json={"ttl_seconds": 300, "reason": "collect examples"},
                headers=_admin(token, tenant),
            )
        )
        await wait_until_started(temporal, f"training-mode:{tenant}", "training.acquire")
        os.killpg(stack.pids()["worker"], signal.SIGKILL)
        await stack.stop(("worker",))
        await stack.start(("worker",))
        response = await enable
    assert response.status_code == 200, response.text
    state = response.json()
    assert state["enabled"] and state["holder"] == "alice"
    history = await temporal.get_workflow_handle(f"training-mode:{tenant}").fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert attempts[0] >= 2  # the acquire really died with the worker and ran again

    lease = json.loads(await redis.get(lock_key(tenant)))
    assert (lease["holder"], lease["fence"]) == ("alice", state["fence"])
    assert int(await redis.get(fence_key(tenant))) == state["fence"] == 1  # moved once
    events = await records_for_key(
        settings.kafka_bootstrap, settings.training_audit_topic, tenant, bool
    )
    # At least once: a retried publish may repeat the record, never with another id.
    assert {(e["id"], e["type"], e["data"]["fence"]) for e in events} == {
        (events[0]["id"], "training.mode.enabled", 1)
    }


async def test_the_workflow_continues_as_new_keeping_the_lease(
    temporal: Client, settings: Settings, redis: Redis
) -> None:
    tenant = _tenant()
    workflow_id = f"training-mode:{tenant}"
    # A run that checks its lease every second and continues as new after two checks, so the
    # test need not fill a history; the API's workflows use 10 s and 360.
    state = TrainingState(
        settings=TrainingSettings(
            tenant=tenant,
            audit_topic=settings.training_audit_topic,
            lease_check_seconds=1,
            checks_per_run=2,
        )
    )
    start = WithStartWorkflowOperation(
        TrainingModeWorkflow.run,
        state,
        id=workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    enabled = await temporal.execute_update_with_start_workflow(
        TrainingModeWorkflow.enable,
        EnableRequest(actor="alice", ttl_seconds=300, reason="collect examples"),
        start_workflow_operation=start,
    )
    handle = temporal.get_workflow_handle(workflow_id)
    first_run = (await handle.describe()).run_id
    async with asyncio.timeout(30):
        while (await handle.describe()).run_id == first_run:
            await asyncio.sleep(0.2)
    assert await handle.query(TrainingModeWorkflow.status) == enabled
    assert json.loads(await redis.get(lock_key(tenant)))["fence"] == enabled.fence
