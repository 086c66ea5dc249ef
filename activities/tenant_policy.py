"""The `policy.store` activity: a tenant's policy change checked against the floor and the
engine, then stored in Redis as its next version (core/tenant_policy.py), for
PolicyChangeWorkflow (workflows/tenant_policy/).

Idempotent: the change's id is stored with it, so a retried store answers the version it
stored the first time instead of storing it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.moderation.tenant_moderators import TenantModerators
from core.redis_keys import tenant_policy_history_key, tenant_policy_key
from core.tenant_policy import STORE, TenantRecord, candidate_record, effective_policy


@dataclass
class PolicyChange:
    tenant: str
    #: The tenant's additions as PUT /v1/policy took them (core/tenant_policy.py).
    additions: dict[str, Any]
    actor: str
    #: The change's workflow id.
    change_id: str


@dataclass
class StoredPolicy:
    sequence: int
    policy_version: str
    constitution_hash: str
    changed_at: str


class PolicyActivities:
    def __init__(self, moderators: TenantModerators, redis: Redis) -> None:
        self._moderators = moderators
        self._store = redis.register_script(STORE)

    @activity.defn(name="policy.store")
    async def store(self, change: PolicyChange) -> StoredPolicy:
        floor = self._moderators.floor.policy
        try:
            candidate = candidate_record(floor, change.additions, change.actor)
            self._moderators.with_record(change.tenant, candidate)  # the engine takes it
        except ValueError as error:
            raise ApplicationError(
                f"The policy cannot be used: {error}", type="invalid_request", non_retryable=True
            ) from None
        additions = candidate.additions.model_dump_json(exclude_none=True)
        raw = await self._store(
            keys=[tenant_policy_key(change.tenant), tenant_policy_history_key(change.tenant)],
            args=[change.change_id, additions, datetime.now(UTC).isoformat(), change.actor],
        )
        stored = TenantRecord.from_json(raw)
        policy = effective_policy(floor, change.tenant, stored)
        return StoredPolicy(
            stored.sequence, policy.version, policy.constitution_hash, stored.changed_at
        )
