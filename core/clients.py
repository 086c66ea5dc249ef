"""Long-lived clients to the systems we integrate with, opened once per process and closed on
exit."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis.asyncio import BlockingConnectionPool, Redis
from temporalio.client import Client

from core.connections import connect_temporal
from core.settings import Settings


@dataclass
class Clients:
    settings: Settings
    temporal: Client
    redis: Redis
    http: httpx.AsyncClient
    #: The blocking reads of followed streams, on a pool of their own, so that many
    #: followers never make a step, a limit or a lease wait for a connection.
    followers: Redis

    @classmethod
    async def open(cls, settings: Settings) -> Clients:
        # lazy: the API must start (and answer /readyz 503) while Temporal is still down.
        temporal = await connect_temporal(settings, lazy=True)
        timeout = settings.readiness_timeout_seconds
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=timeout))
        return cls(
            settings=settings,
            temporal=temporal,
            redis=open_redis(settings),
            http=http,
            followers=open_redis(settings, settings.streams_per_process),
        )

    async def close(self) -> None:
        await self.http.aclose()
        await self.redis.aclose()
        await self.followers.aclose()


def open_redis(settings: Settings, connections: int | None = None) -> Redis:
    """A pooled client: an unreachable Redis fails a command within the readiness timeout;
    a busy pool makes it wait its turn (ORCH_REDIS_MAX_CONNECTIONS), so many followed
    streams slow each other down a little instead of failing every tenant's."""
    timeout = settings.readiness_timeout_seconds
    pool = BlockingConnectionPool.from_url(
        str(settings.redis_url),
        max_connections=connections or settings.redis_max_connections,
        timeout=settings.redis_pool_wait_seconds,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=15,
    )
    return Redis.from_pool(pool)
