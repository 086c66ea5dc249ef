"""The training-mode lock's activities: acquire, renew, release and read a tenant's lease in
Redis (the keys, the lease and the compare-and-act scripts: core/training_lock.py).

TrainingModeWorkflow is the only writer; every activity here is idempotent, so Temporal may
retry any of them. A turn's admission reads the lease through `read_lease`.
"""

from __future__ import annotations

from redis.asyncio import Redis
from temporalio import activity
from temporalio.common import MetricMeter

from core.redis_keys import TENANTS_KEY, fence_key, lock_key, released_key
from core.training_lock import (
    ACQUIRE,
    RELEASE,
    RELEASED_TTL_MS,
    RENEW,
    AcquireResult,
    Lease,
    LeaseRequest,
    ReadRequest,
    ReadResult,
    ReleaseRequest,
    RenewResult,
    lease_json,
)


class TrainingLock:
    def __init__(self, redis: Redis, meter: MetricMeter) -> None:
        self._redis = redis
        self._acquire = redis.register_script(ACQUIRE)
        self._renew = redis.register_script(RENEW)
        self._release = redis.register_script(RELEASE)
        self._state = meter.create_gauge(
            "training_mode_state",
            "1 while the tenant's training mode is on, as this worker saw it.",
        )

    @activity.defn(name="training.acquire")
    async def acquire(self, request: LeaseRequest) -> AcquireResult:
        """Take the lock if it is free; `request.lease.fence` is the lowest fence to hand out."""
        tenant, lease = request.tenant, request.lease
        held, raw = await self._acquire(
            keys=[lock_key(tenant), fence_key(tenant)],
            args=[lease.token, lease_json(lease), max(lease.ttl_ms(), 1), lease.fence],
        )
        await self._redis.sadd(TENANTS_KEY, tenant)
        result = AcquireResult(acquired=bool(held), lease=Lease.parse(raw))
        if result.acquired:
            self._state.set(1, {"tenant": tenant})
        return result

    @activity.defn(name="training.renew")
    async def renew(self, request: LeaseRequest) -> RenewResult:
        """Write our lease again (a new expiry, or back after Redis lost it), never another's."""
        tenant, lease = request.tenant, request.lease
        ttl_ms = lease.ttl_ms()
        if ttl_ms <= 0:
            return RenewResult("expired")
        outcome = int(
            await self._renew(
                keys=[lock_key(tenant), fence_key(tenant), released_key(tenant, lease.token)],
                args=[lease.token, lease_json(lease), ttl_ms, lease.fence],
            )
        )
        if outcome in (1, 2):
            await self._redis.sadd(TENANTS_KEY, tenant)
            self._state.set(1, {"tenant": tenant})
        return RenewResult(
            {0: "held_by_other", 1: "renewed", 2: "restored", 3: "released"}[outcome]
        )

    @activity.defn(name="training.release")
    async def release(self, request: ReleaseRequest) -> bool:
        # The token is remembered as released for as long as any lease can live, not only
        # until this one's expiry: a renewal still in flight may carry a later one (an
        # extend), and must find the token released whenever it arrives.
        tenant, token = request.tenant, request.token
        released = bool(
            await self._release(
                keys=[lock_key(tenant), released_key(tenant, token)], args=[token, RELEASED_TTL_MS]
            )
        )
        self._state.set(0, {"tenant": tenant})
        return released

    @activity.defn(name="training.read")
    async def read(self, request: ReadRequest) -> ReadResult:
        """The tenant's live lease, if any: what marks a conversation turn."""
        return ReadResult(await self.read_lease(request.tenant))

    async def read_lease(self, tenant: str) -> Lease | None:
        raw = await self._redis.get(lock_key(tenant))
        lease = Lease.parse(raw) if raw else None
        self._state.set(1 if lease else 0, {"tenant": tenant})
        return lease
