"""Every Redis script of the product runs behind Redis Cluster: the keys of one script share
a hash tag, so they share a slot (a real three-node Valkey cluster, started here)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio.cluster import RedisCluster
from temporalio.common import MetricMeter
from temporalio.testing import ActivityEnvironment

from activities.redis_stream import StreamEvent, StreamTarget, TurnStreams
from activities.training_lock import TrainingLock
from api.limits import TenantLimits
from core.settings import Settings
from core.training_lock import Lease, LeaseRequest, ReleaseRequest
from tests.helpers.valkey_cluster import valkey_cluster

#: Starts servers of its own.
pytestmark = pytest.mark.servers


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[RedisCluster]:
    async with valkey_cluster(tmp_path) as ports:
        client = RedisCluster(host="127.0.0.1", port=ports[0])
        try:
            await client.initialize()
            assert len(client.get_primaries()) == 3
            yield client
        finally:
            await client.aclose()


async def test_a_streamed_turns_events_are_appended_behind_a_cluster(cluster: RedisCluster) -> None:
    target = StreamTarget(f"conversation:acme:{uuid.uuid4().hex}", uuid.uuid4().hex, turn=1)
    streams = TurnStreams(cluster)
    opening = [StreamEvent("turn.accepted", {"turn": 1})]
    written = await streams.append(
        target, [StreamEvent("token", {"delta": "hi"})], 1, opening=opening
    )
    assert [entry.split("-")[0] for entry in written] == ["1", "1"]


async def test_the_training_lock_runs_behind_a_cluster(cluster: RedisCluster) -> None:
    now = datetime.now(UTC)
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    lease = Lease(
        uuid.uuid4().hex,
        "alice",
        1,
        "collect",
        now.isoformat(),
        (now + timedelta(minutes=1)).isoformat(),
    )
    lock = TrainingLock(cluster, MetricMeter.noop)
    env = ActivityEnvironment()
    assert (await env.run(lock.acquire, LeaseRequest(tenant, lease))).acquired
    assert (await env.run(lock.renew, LeaseRequest(tenant, lease))).outcome == "renewed"
    assert await env.run(lock.release, ReleaseRequest(tenant, lease.token, lease.expires_at))


async def test_the_tenant_limits_run_behind_a_cluster(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    limits = TenantLimits(cluster, Settings(data_dir=tmp_path))
    for _ in range(3):
        tenant = f"t-{uuid.uuid4().hex[:6]}"
        await limits.admit(tenant)
        for release in (await limits.stream(tenant), await limits.turn(tenant, "s1")):
            await release()
