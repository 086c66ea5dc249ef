"""Deleting sessions: the ErasureWorkflow the API starts for one session (DELETE) or for a
subject (POST /v1/erasure), what a job tells while it runs and once it ended, and the
refusal of a deleted session's id."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from api.auth import Principal
from api.temporal_errors import temporal_errors
from core.clients import Clients
from core.errors import NotFound
from core.redis_keys import deleted_sessions_key
from core.search_attributes import TENANT
from core.telemetry import current_traceparent
from core.workflow_ids import erasure_id
from workflows.erasure.types import ErasureProgress, ErasureRequest
from workflows.erasure.workflow import ErasureWorkflow

log = logging.getLogger("orchestrator.api")


async def refuse_deleted(
    clients: Clients, tenant: str, session_id: str, starting: bool = False
) -> None:
    """404 for a deleted session (workflows/erasure/): Temporal may take a moment to forget
    it, and its id is never started again. Unchecked while Redis is unreachable."""
    try:
        deleted = await clients.redis.sismember(deleted_sessions_key(tenant), session_id)
    except RedisError as error:
        log.warning("deleted sessions not checked (Redis): %s", error)
        return
    if deleted:
        again = (
            ": a deleted session's id is not used again; start a new session" if starting else ""
        )
        raise NotFound(f"No session {session_id}{again}.")


async def start_erasure(
    clients: Clients,
    principal: Principal,
    active_policy: dict[str, str],
    job: str,
    *,
    session_ids: list[str] | None = None,
    subject: str | None = None,
) -> WorkflowHandle[ErasureWorkflow, ErasureProgress]:
    """Start the erasure `job` of `principal`'s tenant (a job already running is joined)."""
    settings = clients.settings
    request = ErasureRequest(
        tenant=principal.tenant,
        actor=principal.subject,
        events_topic=settings.conversation_events_topic,
        policy_version=active_policy["policy_version"],
        constitution_hash=active_policy["constitution_hash"],
        session_ids=session_ids or [],
        subject=subject,
        traceparent=current_traceparent(),
    )
    with temporal_errors(f"erasure {job}"):
        return await clients.temporal.start_workflow(
            ErasureWorkflow.run,
            request,
            id=erasure_id(principal.tenant, job),
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(TENANT, principal.tenant)]
            ),
        )


async def erasure_status(clients: Clients, tenant: str, job: str) -> tuple[str, ErasureProgress]:
    """The job's status (`running`, `completed` or `failed`) and its progress."""
    handle = clients.temporal.get_workflow_handle_for(ErasureWorkflow.run, erasure_id(tenant, job))
    with temporal_errors(f"erasure job {job}"):
        described = await handle.describe()
        if described.status == WorkflowExecutionStatus.COMPLETED:
            return "completed", await handle.result()
        progress = await handle.query(ErasureWorkflow.progress)
    running = described.status == WorkflowExecutionStatus.RUNNING
    return ("running" if running else "failed"), progress
