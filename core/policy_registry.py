"""The active policy in Redis: published by every process that loads one, read by the API.

The API compares request headers with what is published, so all API replicas agree on the
policy the workers enforce even while a new policy rolls out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from redis.asyncio import Redis

from core.policy import ACTIVE_POLICY_KEY, Policy

log = logging.getLogger("orchestrator.policy")


async def publish(redis: Redis, policy: Policy) -> None:
    identity = {"policy_version": policy.version, "constitution_hash": policy.constitution_hash}
    await redis.set(ACTIVE_POLICY_KEY, json.dumps(identity))


async def publish_until_done(redis: Redis, policy: Policy) -> None:
    """Publish at start-up, retrying while Redis is unreachable (start-up does not wait)."""
    delay = 0.5
    while True:
        try:
            await publish(redis, policy)
            log.info("active policy %s (%s) published", policy.version, policy.constitution_hash)
            return
        except Exception as error:  # noqa: BLE001 - keep trying until Redis answers
            log.warning("cannot publish the active policy yet: %s", error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


class ActivePolicy:
    """The published identity, cached for a second; our own policy if none is published."""

    def __init__(self, redis: Redis, own: Policy, ttl_seconds: float = 1.0) -> None:
        self._redis = redis
        self._own = {"policy_version": own.version, "constitution_hash": own.constitution_hash}
        self._ttl = ttl_seconds
        self._cached = self._own
        self._expires = 0.0

    def last_known(self) -> dict[str, str]:
        """The identity read last (or our own), without asking Redis."""
        return self._cached

    async def identity(self) -> dict[str, str]:
        if time.monotonic() >= self._expires:
            try:
                raw = await self._redis.get(ACTIVE_POLICY_KEY)
                self._cached = json.loads(raw) if raw else self._own
            except Exception as error:  # noqa: BLE001 - Redis down: keep the last known policy
                log.warning("cannot read the active policy, using the last known: %s", error)
            self._expires = time.monotonic() + self._ttl
        return self._cached
