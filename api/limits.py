"""Per-tenant limits, kept in Redis so every API replica counts alike (docs/api.md, Limits).

- requests: a token bucket per tenant (`requests_per_second`, `burst`), one script, one
  round trip per authenticated request;
- streams open at once per tenant, and turns in flight per session: slots in a sorted set,
  taken before anything starts and given back when the request ends. A slot whose holder
  died (a killed API process) lapses after `lease_seconds`.

Over a limit: `RateLimited` (429 problem+json with `Retry-After`), and nothing is started.
Redis unreachable: the request and turn limits are not enforced (logged), so an outage of
the counters never refuses turns that Temporal would serve; a stream, which Redis buffers,
is refused at once with 503 (the RedisError's problem) before anything starts.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.quotas import Quotas
from core.errors import DependencyUnavailable, RateLimited
from core.redis_keys import turn_slots_key
from core.settings import Settings

log = logging.getLogger("orchestrator.limits")

# KEYS[1]: the tenant's bucket; ARGV: rate per second, burst. Returns {1, 0} or {0, wait}.
_TAKE_TOKEN = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
if wait > 0 then return {0, tostring(wait)} end
return {1, '0'}
"""

# KEYS[1]: the slots; ARGV: holder, limit, lease seconds. Returns 1 (taken) or 0 (full).
_TAKE_SLOT = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

Release = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


class TenantLimits:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._take_token = redis.register_script(_TAKE_TOKEN)
        self._take_slot = redis.register_script(_TAKE_SLOT)
        # A slot outlives no request: a turn ends by ORCH_MAX_TURN_SECONDS, its stream soon after.
        self._lease_seconds = math.ceil(settings.max_turn_seconds) + 60
        #: Streams this process relays now, against `streams_per_process`.
        self._streams_here = 0
        #: The token and turn quotas of the window.
        self.quotas = Quotas(redis, settings)

    async def admit(self, tenant: str) -> None:
        """Take one request from the tenant's bucket, or refuse with the time to wait."""
        limits = self._settings.limits_for(tenant)
        keys = [f"limits:{{{tenant}}}:requests"]
        try:
            allowed, wait = await self._take_token(keys, [limits.requests_per_second, limits.burst])
        except RedisError as error:
            log.warning("request limit not checked (Redis): %s", error)
            return
        if not int(allowed):
            seconds = float(wait)
            raise RateLimited(
                f"Tenant {tenant} is over {limits.requests_per_second:g} requests per second "
                f"(burst {limits.burst}); retry after {math.ceil(seconds)} s.",
                retry_after_seconds=math.ceil(seconds),
            )

    async def stream(self, tenant: str) -> Release:
        """Hold one of this process's streams and one of the tenant's concurrent streams until
        the returned release is awaited."""
        here = self._settings.streams_per_process
        if self._streams_here >= here:
            raise DependencyUnavailable(
                f"This API process relays {here} streams, its most; retry in a moment (another "
                "replica may take it).",
                retry_after_seconds=1,
            )
        self._streams_here += 1
        limit = self._settings.limits_for(tenant).concurrent_streams
        try:
            tenants = await self._slot(
                f"limits:{{{tenant}}}:streams",
                limit,
                f"Tenant {tenant} has {limit} streams open, its limit; close one or retry later.",
                fail_open=False,
            )
        except BaseException:
            self._streams_here -= 1
            raise
        given_back = False

        async def release() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self._streams_here -= 1
                await tenants()

        return release

    async def turn(self, tenant: str, session_id: str) -> Release:
        """Hold one of the session's turns in flight until the returned release is awaited."""
        limit = self._settings.limits_for(tenant).turns_in_flight_per_session
        return await self._slot(
            turn_slots_key(tenant, session_id),
            limit,
            f"Session {session_id} has {limit} turns in flight, its limit; wait for one to end.",
        )

    async def _slot(self, key: str, limit: int, refusal: str, fail_open: bool = True) -> Release:
        holder = uuid.uuid4().hex
        try:
            taken = await self._take_slot([key], [holder, limit, self._lease_seconds])
        except RedisError as error:
            if not fail_open:
                raise
            log.warning("slot limit not checked (Redis): %s", error)
            return _nothing
        if not int(taken):
            raise RateLimited(refusal, retry_after_seconds=1)

        async def release() -> None:
            try:
                await self._redis.zrem(key, holder)
            except RedisError as error:  # the lease ends it anyway
                log.warning("slot %s not given back (Redis): %s", key, error)

        return release
