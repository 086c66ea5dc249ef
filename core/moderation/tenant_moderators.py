"""The moderator of each tenant: the floor's, or one for the tenant's own policy.

A worker holds one engine (the classifier is loaded once) and makes, per tenant that set
additions, a moderator on the effective policy (core/tenant_policy.py), kept while its
version stands. Each turn asks for its tenant's once, at its admission, and keeps it for
its output check, so a turn in flight finishes under the version it started with.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.moderation.moderator import Moderator
from core.tenant_policy import TenantRecord, effective_policy, read_record

log = logging.getLogger("orchestrator.moderation")
#: The longest a turn waits for its tenant's policy: past it, the last one known is used.
READ_SECONDS = 2.0
#: Moderators kept (one per tenant with a policy of its own, per version).
KEPT = 256


class TenantModerators:
    def __init__(self, floor: Moderator, redis: Redis) -> None:
        self.floor = floor
        self._redis = redis
        self._kept: OrderedDict[tuple[str, str, int], Moderator] = OrderedDict()
        #: The moderator each tenant got last, for when Redis cannot be read.
        self._last: dict[str, Moderator] = {}

    async def for_tenant(self, tenant: str | None) -> Moderator:
        """The tenant's moderator as its policy stands now (the floor's without a tenant)."""
        if not tenant:
            return self.floor
        try:
            async with asyncio.timeout(READ_SECONDS):
                record = await read_record(self._redis, tenant)
        except (RedisError, TimeoutError, OSError) as error:
            known = self._last.get(tenant, self.floor)
            log.warning(
                "tenant %s's policy unreadable, %s is used: %s", tenant, known.policy.version, error
            )
            return known
        moderator = self.with_record(tenant, record) if record else self.floor
        self._last[tenant] = moderator
        return moderator

    def with_record(self, tenant: str, record: TenantRecord) -> Moderator:
        """The moderator of the tenant's policy with `record`'s additions (kept by version);
        ValueError when the engine cannot take it (a threshold for a category without a
        classifier head)."""
        if not record.sequence:  # a candidate, for a dry run or before it is stored
            return self._made(tenant, record)
        key = (tenant, self.floor.policy.constitution_hash, record.sequence)
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        moderator = self._kept[key] = self._made(tenant, record)
        if len(self._kept) > KEPT:
            self._kept.popitem(last=False)
        return moderator

    def _made(self, tenant: str, record: TenantRecord) -> Moderator:
        return self.floor.with_policy(effective_policy(self.floor.policy, tenant, record))
