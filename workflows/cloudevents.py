"""CloudEvents 1.0 (structured mode) for conversation and training events
(docs/interface.md, section 5).

Pure functions of workflow state: the same logical event always gets the same `id`
(a UUIDv5 of workflow id, kind and sequence), so a retried publish repeats it and
consumers deduplicate on it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.events import PublishRequest
    from activities.tenant_policy import StoredPolicy
    from core.moderation.verdict import Verdict, public_verdict
    from core.training_lock import Lease
    from workflows.conversation.types import Feedback, TurnRecord
    from workflows.erasure.types import ErasureRequest
    from workflows.tenant_policy.types import PolicyChangeRequest
    from workflows.timestamps import iso
    from workflows.training_mode.types import DisableRequest, EnableRequest, TrainingState

_EVENT_NAMESPACE = uuid.UUID("6f1e3c1e-3d7a-4c55-9a8e-6c1b0c7f5a10")


def event_id(workflow_id: str, kind: str, sequence: int) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{workflow_id}/{kind}/{sequence}"))


def cloud_event(
    *,
    topic: str,
    key: str,
    tenant: str,
    source: str,
    event_type: str,
    event_id: str,
    time: datetime,
    traceparent: str,
    data: dict[str, Any],
    policy_version: str,
    constitution_hash: str,
    headers: dict[str, str] | None = None,
) -> PublishRequest:
    """One event, keyed by `key` (its order is kept per key), stamped with the policy in force."""
    value = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": iso(time),
        "subject": key,
        "datacontenttype": "application/json",
        "data": data,
        "tenant": tenant,
        "traceparent": traceparent,
        "policyversion": policy_version,
        "constitutionhash": constitution_hash,
    }
    return PublishRequest(
        topic=topic,
        key=key,
        value=value,
        headers={
            "event_id": event_id,
            "tenant": tenant,
            "traceparent": traceparent,
            "constitution_hash": constitution_hash,
            **(headers or {}),
        },
    )


def conversation_event(
    *,
    topic: str,
    tenant: str,
    session_id: str,
    event_type: str,
    event_id: str,
    time: datetime,
    traceparent: str,
    data: dict[str, Any],
    policy: Verdict,
    decision: str | None = None,
) -> PublishRequest:
    """`policy` names the policy in force; `decision` is set on turn events only."""
    return cloud_event(
        topic=topic,
        key=session_id,
        tenant=tenant,
        source=f"/orchestrator/tenants/{tenant}/conversations",
        event_type=event_type,
        event_id=event_id,
        time=time,
        traceparent=traceparent,
        data=data,
        policy_version=policy.policy_version,
        constitution_hash=policy.constitution_hash,
        headers={"policy_verdict": decision} if decision is not None else None,
    )


def turn_data(session_id: str, record: TurnRecord) -> dict[str, Any]:
    """The `data` of a conversation.turn.* event (docs/interface.md, section 5)."""
    return {
        "session_id": session_id,
        "turn": record.turn,
        "status": record.status,
        "message": record.message,
        "reply": record.reply,
        "verdict": public_verdict(record.verdict),
        "usage": {
            "prompt_tokens": record.usage.prompt_tokens,
            "completion_tokens": record.usage.completion_tokens,
        },
        "training_mode": record.training_mode,
        "training_fence": record.training_fence,
        "trace_id": record.trace_id,
        "metadata": record.metadata,
        # A failed turn: why (the code of its problem, e.g. `turn_timeout`); else None.
        "failure": record.problem["code"] if record.problem else None,
        # Who asked (the token's `sub`); empty for turns from before turns recorded it.
        "actor": record.actor,
    }


def feedback_data(session_id: str, feedback: Feedback) -> dict[str, Any]:
    """The `data` of a conversation.feedback event."""
    return {
        "session_id": session_id,
        "turn": feedback.turn,
        "rating": feedback.rating,
        "comment": feedback.comment,
        "trace_id": feedback.trace_id,
        "actor": feedback.actor,
    }


def closed_data(session_id: str, reason: str, turns: int, actor: str) -> dict[str, Any]:
    """The `data` of a conversation.closed event; `actor` is "system" for an idle timeout."""
    return {"session_id": session_id, "reason": reason, "turns": turns, "actor": actor}


def deleted_event(
    request: ErasureRequest, session_id: str, chain: str, time: datetime
) -> PublishRequest:
    """The tombstone of a deleted session (`conversation.deleted`), keyed like its events:
    whoever holds the session's events drops them."""
    reason = "erasure" if request.subject is not None else "deleted"
    return cloud_event(
        topic=request.events_topic,
        key=session_id,
        tenant=request.tenant,
        source=f"/orchestrator/tenants/{request.tenant}/conversations",
        event_type="conversation.deleted",
        event_id=event_id(chain, "deleted", 1),
        time=time,
        traceparent=request.traceparent,
        data={"session_id": session_id, "reason": reason, "actor": request.actor},
        policy_version=request.policy_version,
        constitution_hash=request.constitution_hash,
    )


def policy_changed_event(
    request: PolicyChangeRequest, stored: StoredPolicy, chain: str, time: datetime
) -> PublishRequest:
    """`policy.changed`: a tenant's policy has a new version, stamped with it."""
    return cloud_event(
        topic=request.audit_topic,
        key=request.tenant,
        tenant=request.tenant,
        source=f"/orchestrator/tenants/{request.tenant}/policy",
        event_type="policy.changed",
        event_id=event_id(chain, "changed", 1),
        time=time,
        traceparent=request.traceparent,
        data={
            "tenant": request.tenant,
            "sequence": stored.sequence,
            "policy_version": stored.policy_version,
            "constitution_hash": stored.constitution_hash,
            "actor": request.actor,
            "additions": request.additions,
        },
        policy_version=stored.policy_version,
        constitution_hash=stored.constitution_hash,
    )


def training_event(
    state: TrainingState,
    kind: str,
    request: EnableRequest | DisableRequest,
    previous: Lease | None,
    *,
    chain: str,
    time: datetime,
) -> PublishRequest:
    """The `training.mode.<kind>` audit event of the transition `state.transitions`.

    `previous` is the lease before the transition (None when the mode was off); the event
    names the lease after it, or the one that ended.
    """
    lease = state.lease or previous
    assert lease is not None
    tenant = state.settings.tenant
    return cloud_event(
        topic=state.settings.audit_topic,
        key=tenant,
        tenant=tenant,
        source=f"/orchestrator/tenants/{tenant}/training",
        event_type=f"training.mode.{kind}",
        event_id=event_id(chain, kind, state.transitions),
        time=time,
        traceparent=request.traceparent,
        data={
            "tenant": tenant,
            "actor": request.actor,
            "reason": request.reason,
            "fence": lease.fence,
            "expires_at": lease.expires_at,
            "previous_holder": previous.holder if previous else None,
        },
        policy_version=state.policy.policy_version,
        constitution_hash=state.policy.constitution_hash,
    )
