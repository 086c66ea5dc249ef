"""Training-mode routes: enable and disable are updates on the tenant's TrainingModeWorkflow.

Reading the mode is open to every user of the tenant (whose turns it marks); changing it
needs the `admin` role. A refusal (401, 403, 409, 422, 503) changes nothing.
"""

from __future__ import annotations

from fastapi import APIRouter
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)

from api.deps import ActivePolicyDep, AdminPrincipal, ClientsDep, SettingsDep, UserPrincipal
from api.metrics import TRAINING_MODE_STATE
from api.openapi import V1_PROBLEMS, problems
from api.schemas.training import DisableBody, EnableBody, TrainingOut
from api.temporal_errors import temporal_errors
from core.clients import Clients
from core.errors import InvalidRequest, NotFound
from core.search_attributes import TENANT
from core.settings import Settings
from core.telemetry import current_trace_id, current_traceparent
from workflows.training_mode.types import (
    DisableRequest,
    EnableRequest,
    PolicyIdentity,
    TrainingSettings,
    TrainingState,
    TrainingStatus,
)
from workflows.training_mode.workflow import TrainingModeWorkflow

router = APIRouter(prefix="/v1/training", tags=["training"], responses=V1_PROBLEMS)


def workflow_id(tenant: str) -> str:
    return f"training-mode:{tenant}"


def _start(settings: Settings, tenant: str) -> WithStartWorkflowOperation:  # type: ignore[type-arg]
    state = TrainingState(
        settings=TrainingSettings(
            tenant=tenant,
            audit_topic=settings.training_audit_topic,
            min_ttl_seconds=settings.training_min_ttl_seconds,
        )
    )
    return WithStartWorkflowOperation(
        TrainingModeWorkflow.run,
        state,
        id=workflow_id(tenant),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(TENANT, tenant)]),
    )


def _answer(status: TrainingStatus) -> TrainingOut:
    TRAINING_MODE_STATE.labels(tenant=status.tenant).set(1 if status.enabled else 0)
    return TrainingOut.of(status)


def _never_enabled(tenant: str) -> TrainingStatus:
    return TrainingStatus(tenant, False, None, 0, None, None, None)


@router.get("")
async def get_training(principal: UserPrincipal, clients: ClientsDep) -> TrainingOut:
    return _answer(await _status(clients, principal.tenant))


async def _status(clients: Clients, tenant: str) -> TrainingStatus:
    handle = clients.temporal.get_workflow_handle(workflow_id(tenant))
    try:
        with temporal_errors(f"training mode for tenant {tenant}"):
            status: TrainingStatus = await handle.query(TrainingModeWorkflow.status)
    except NotFound:
        return _never_enabled(tenant)
    return status


@router.post("/enable", responses=problems(400, 413, 422))
async def enable(
    body: EnableBody,
    principal: AdminPrincipal,
    clients: ClientsDep,
    settings: SettingsDep,
    policy: ActivePolicyDep,
) -> TrainingOut:
    if body.ttl_seconds < settings.training_min_ttl_seconds:
        raise InvalidRequest(
            f"body.ttl_seconds: must be at least {settings.training_min_ttl_seconds} seconds."
        )
    request = EnableRequest(
        actor=principal.subject,
        ttl_seconds=body.ttl_seconds,
        reason=body.reason,
        trace_id=current_trace_id(),
        traceparent=current_traceparent(),
        policy=PolicyIdentity(**policy),
    )
    with temporal_errors(f"training mode for tenant {principal.tenant}"):
        status: TrainingStatus = await clients.temporal.execute_update_with_start_workflow(
            TrainingModeWorkflow.enable,
            request,
            start_workflow_operation=_start(settings, principal.tenant),
        )
    return _answer(status)


@router.post("/disable", responses=problems(400, 413, 422))
async def disable(
    body: DisableBody, principal: AdminPrincipal, clients: ClientsDep, policy: ActivePolicyDep
) -> TrainingOut:
    request = DisableRequest(
        actor=principal.subject,
        reason=body.reason,
        trace_id=current_trace_id(),
        traceparent=current_traceparent(),
        policy=PolicyIdentity(**policy),
    )
    handle = clients.temporal.get_workflow_handle(workflow_id(principal.tenant))
    try:
        with temporal_errors(f"training mode for tenant {principal.tenant}"):
            status: TrainingStatus = await handle.execute_update(
                TrainingModeWorkflow.disable, request
            )
    except NotFound:  # never enabled: already off (disabling is idempotent)
        status = _never_enabled(principal.tenant)
    return _answer(status)
