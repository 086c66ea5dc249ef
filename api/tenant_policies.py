"""Which policy a tenant's requests are under, as the API tells and checks it: the floor in
force (core/policy_registry.py), with the tenant's additions (core/tenant_policy.py) merged.

Every authenticated /v1 request reads its tenant's additions (one small Redis read) so
that the policy headers, and the check of the headers a client sends, name the version its
next turn is checked with. The merged policy is kept per version.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.policy import Policy
from core.policy_registry import ActivePolicy
from core.tenant_policy import TenantRecord, effective_policy, read_record

log = logging.getLogger("orchestrator.api")


class TenantPolicies:
    def __init__(self, redis: Redis, floor: Policy, active: ActivePolicy) -> None:
        self._redis = redis
        self.floor = floor
        self._active = active
        self._merged: dict[tuple[str, int], Policy] = {}

    async def record(self, tenant: str) -> TenantRecord | None:
        return await read_record(self._redis, tenant)

    async def identity(self, tenant: str) -> dict[str, str]:
        """The version and hash the tenant's next turn is checked with; the floor in force
        when the tenant has no additions, or when Redis cannot say."""
        try:
            record = await self.record(tenant)
        except RedisError as error:
            log.warning("tenant %s's policy unreadable: %s", tenant, error)
            record = None
        if record is None or not record.additions.categories:
            return await self._active.identity()
        policy = self.effective(tenant, record)
        return {"policy_version": policy.version, "constitution_hash": policy.constitution_hash}

    def effective(self, tenant: str, record: TenantRecord | None) -> Policy:
        if record is None:
            return self.floor
        key = (tenant, record.sequence)
        if key not in self._merged:
            if len(self._merged) > 1024:
                self._merged.clear()
            self._merged[key] = effective_policy(self.floor, tenant, record)
        return self._merged[key]

    def view(self, tenant: str, record: TenantRecord | None) -> dict[str, Any]:
        """What GET /v1/policy answers."""
        policy = self.effective(tenant, record)
        return {
            "policy_version": policy.version,
            "constitution_hash": policy.constitution_hash,
            "floor_version": self.floor.version,
            "sequence": record.sequence if record else 0,
            "additions": record.additions.model_dump(exclude_none=True)
            if record
            else {"categories": {}},
            "changed_at": record.changed_at if record else None,
            "changed_by": record.actor if record else None,
        }
