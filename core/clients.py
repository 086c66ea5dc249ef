"""Long-lived clients to the systems we integrate with, opened once per process and closed on exit."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis.asyncio import Redis
from temporalio.client import Client

from core.connections import connect_temporal
from core.settings import Settings


@dataclass
class Clients:
    settings: Settings
    temporal: Client
    redis: Redis
    http: httpx.AsyncClient

    @classmethod
    async def open(cls, settings: Settings) -> Clients:
        # lazy: the API must start (and answer /readyz 503) while Temporal is still down.
        temporal = await connect_temporal(settings, lazy=True)
        timeout = settings.readiness_timeout_seconds
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=timeout))
        return cls(settings=settings, temporal=temporal, redis=open_redis(settings), http=http)

    async def close(self) -> None:
        await self.http.aclose()
        await self.redis.aclose()


def open_redis(settings: Settings) -> Redis:
    """A pooled client that gives up within the readiness timeout instead of hanging."""
    timeout = settings.readiness_timeout_seconds
    return Redis.from_url(
        str(settings.redis_url),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=15,
    )
