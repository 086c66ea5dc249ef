"""The tenant's own policy: read by any user of the tenant, changed by its admins, never
looser than the operator's (core/tenant_policy.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from api.deps import AdminPrincipal, ClientsDep, TenantPoliciesDep, UserPrincipal
from api.openapi import V1_PROBLEMS, problems
from api.schemas.policy import PolicyOut
from api.temporal_errors import temporal_errors
from core.errors import DependencyUnavailable, InvalidRequest, PolicyLoosens
from core.telemetry import current_traceparent
from core.tenant_policy import TenantAdditions, loosenings, unknown_categories
from core.workflow_ids import policy_change_id
from workflows.tenant_policy.types import PolicyChangeRequest
from workflows.tenant_policy.workflow import PolicyChangeWorkflow

#: How long PUT waits for the change to be stored before it says it goes on by itself.
STORE_WAIT_SECONDS = 30
router = APIRouter(prefix="/v1/policy", tags=["policy"], responses=V1_PROBLEMS)


@router.get("", responses=problems())
async def get_policy(principal: UserPrincipal, policies: TenantPoliciesDep) -> PolicyOut:
    """The policy the tenant's turns are checked with: its version, its hash, and what the
    tenant added to the operator's."""
    record = await policies.record(principal.tenant)
    return PolicyOut(**policies.view(principal.tenant, record))


@router.put("", responses=problems(400, 413, 422))
async def put_policy(
    additions: TenantAdditions,
    principal: AdminPrincipal,
    clients: ClientsDep,
    policies: TenantPoliciesDep,
) -> PolicyOut:
    """Replace the tenant's additions; the tenant's next turn is checked with them."""
    unknown = unknown_categories(policies.floor.document, additions)
    if unknown:
        raise InvalidRequest("; ".join(unknown) + ". Nothing changed.")
    loose = loosenings(policies.floor.document, additions)
    if loose:
        raise PolicyLoosens(
            "The policy would refuse less than the operator's, which it may not: "
            + "; ".join(loose)
            + ". Nothing changed.",
            loosens=loose,
        )
    change = PolicyChangeRequest(
        tenant=principal.tenant,
        actor=principal.subject,
        audit_topic=clients.settings.training_audit_topic,
        additions=additions.model_dump(exclude_none=True),
        traceparent=current_traceparent(),
    )
    with temporal_errors("policy change"):
        handle = await clients.temporal.start_workflow(
            PolicyChangeWorkflow.run,
            change,
            id=policy_change_id(principal.tenant, uuid.uuid4().hex),
            task_queue=clients.settings.task_queue,
        )
        await _until_stored(handle)
    record = await policies.record(principal.tenant)
    return PolicyOut(**policies.view(principal.tenant, record))


async def _until_stored(handle: WorkflowHandle[PolicyChangeWorkflow, Any]) -> None:
    """Wait for the change to be stored, not for its audit event (a broker outage delays
    that one, the change takes effect at once)."""
    try:
        async with asyncio.timeout(STORE_WAIT_SECONDS):
            while True:
                described = await handle.describe()
                if described.status != WorkflowExecutionStatus.RUNNING:
                    await handle.result()  # raises what failed it
                    return
                if await handle.query(PolicyChangeWorkflow.stored) is not None:
                    return
                await asyncio.sleep(0.05)
    except WorkflowFailureError as failed:
        raise InvalidRequest(_why(failed)) from None
    except TimeoutError:
        raise DependencyUnavailable(
            "The policy change is under way and takes effect once stored (a dependency is "
            "slow or away); read GET /v1/policy in a moment."
        ) from None


def _why(failed: WorkflowFailureError) -> str:
    cause: Any = failed.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.cause
    return cause.message if cause is not None else "The policy could not be stored."
