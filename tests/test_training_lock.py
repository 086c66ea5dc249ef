"""The training lock's scripts against the real Redis: what a late retry may and may not do."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from redis.crc import key_slot
from temporalio.common import MetricMeter
from temporalio.testing import ActivityEnvironment

from activities.training_lock import TrainingLock
from core.redis_keys import fence_key, lock_key, released_key
from core.training_lock import Lease, LeaseRequest, ReleaseRequest


def _lease(ttl_seconds: int = 60) -> Lease:
    now = datetime.now(UTC)
    return Lease(
        token=uuid.uuid4().hex,
        holder="alice",
        fence=1,
        reason="collect",
        enabled_at=now.isoformat(),
        expires_at=(now + timedelta(seconds=ttl_seconds)).isoformat(),
    )


def test_the_keys_of_one_tenant_share_a_cluster_slot() -> None:
    slots = {key_slot(key.encode()) for key in (lock_key("acme"), fence_key("acme"),
                                                released_key("acme", "a-token"))}  # fmt: skip
    assert len(slots) == 1
    assert key_slot(lock_key("acme").encode()) != key_slot(lock_key("globex").encode())


async def test_a_renewal_arriving_after_the_release_does_not_write_the_lease_back(
    redis: Redis,
) -> None:
    tenant, lease = f"t-{uuid.uuid4().hex[:10]}", _lease()
    lock = TrainingLock(redis, MetricMeter.noop)
    env = ActivityEnvironment()
    assert (await env.run(lock.acquire, LeaseRequest(tenant, lease))).acquired
    assert await env.run(lock.release, ReleaseRequest(tenant, lease.token, lease.expires_at))

    late = await env.run(lock.renew, LeaseRequest(tenant, lease))

    assert late.outcome == "released"
    assert await redis.exists(lock_key(tenant)) == 0
    # The released token is remembered for as long as any lease can live (a day).
    assert 23 * 3600_000 < await redis.pttl(released_key(tenant, lease.token)) <= 24 * 3600_000


async def test_a_late_renewal_of_an_extended_lease_does_not_bring_it_back(
    redis: Redis,
) -> None:
    """Released with its first expiry; a renewal of the extended lease, still in flight,
    arrives after that expiry: the lease stays released."""
    tenant, lease = f"t-{uuid.uuid4().hex[:10]}", _lease(ttl_seconds=1)
    lock = TrainingLock(redis, MetricMeter.noop)
    env = ActivityEnvironment()
    assert (await env.run(lock.acquire, LeaseRequest(tenant, lease))).acquired
    assert await env.run(lock.release, ReleaseRequest(tenant, lease.token, lease.expires_at))
    await asyncio.sleep(1.2)  # past the first expiry
    extended = dataclasses.replace(lease, expires_at=_lease(ttl_seconds=3600).expires_at)

    late = await env.run(lock.renew, LeaseRequest(tenant, extended))

    assert late.outcome == "released"
    assert await redis.exists(lock_key(tenant)) == 0


async def test_a_lease_lost_by_redis_is_still_written_back_by_its_holder(redis: Redis) -> None:
    tenant, lease = f"t-{uuid.uuid4().hex[:10]}", _lease()
    lock = TrainingLock(redis, MetricMeter.noop)
    env = ActivityEnvironment()
    assert (await env.run(lock.acquire, LeaseRequest(tenant, lease))).acquired
    await redis.delete(lock_key(tenant))

    assert (await env.run(lock.renew, LeaseRequest(tenant, lease))).outcome == "restored"
    assert Lease.parse(await redis.get(lock_key(tenant))).token == lease.token
