"""The token and turn quotas of a window (core/usage.py): a turn starts only if its worst
case fits what the tenant, and the subject, have left; its reservation is given back once
it has answered, by which time its real usage is counted."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.auth import Principal
from core.errors import QuotaExceeded
from core.settings import Settings
from core.usage import RESERVE, reservation_keys, window_keys, window_of

log = logging.getLogger("orchestrator.limits")
#: Gives a reservation back.
Release = Callable[[], Awaitable[None]]
_QUOTAS = {
    "tokens": "tokens",
    "turns": "turns",
    "subject_tokens": "your tokens",
    "subject_turns": "your turns",
}


class Quotas:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._reserve = redis.register_script(RESERVE)
        # A reservation outlives no turn: a turn ends by ORCH_MAX_TURN_SECONDS.
        self._lease_ms = (math.ceil(settings.max_turn_seconds) + 60) * 1000

    def worst_case(self) -> int:
        """The most tokens one turn can use: its context budget and its longest reply."""
        return self._settings.context_token_budget + self._settings.max_reply_tokens

    async def reserve(self, principal: Principal) -> Release:
        """Hold one turn's worst case, or refuse with the time to the window's end. Not
        held while Redis is unreachable (as the other limits)."""
        limits = self._settings.limits_for(principal.tenant)
        quotas = [
            limits.tokens_per_window,
            limits.turns_per_window,
            limits.subject_tokens_per_window,
            limits.subject_turns_per_window,
        ]
        if not any(quotas):
            return _nothing
        tenant, subject = principal.tenant, principal.subject
        now = datetime.now(UTC)
        number, ends = window_of(now, self._settings.quota_window_seconds)
        tokens = self.worst_case()
        reservation = uuid.uuid4().hex
        member = f"{reservation}|{tokens}"  # as the script keeps it
        zsets = reservation_keys(tenant, subject)
        args: list[str | int] = [int(time.time() * 1000), reservation, tokens, self._lease_ms]
        try:
            answer = await self._reserve(
                keys=[*window_keys(tenant, subject, number), *zsets], args=[*args, *quotas]
            )
        except RedisError as error:
            log.warning("quotas not checked (Redis): %s", error)
            return _nothing
        if not int(answer[0]):
            which = _QUOTAS[answer[1].decode() if isinstance(answer[1], bytes) else answer[1]]
            wait = max(1, math.ceil((ends - now).total_seconds()))
            raise QuotaExceeded(
                f"The quota of {which} for this window is used up (a turn may use up to "
                f"{tokens} tokens); it renews at {ends.isoformat()}.",
                retry_after_seconds=wait,
            )

        async def release() -> None:
            try:
                for zset in zsets:
                    await self._redis.zrem(zset, member)
            except RedisError as error:  # the lease ends it anyway
                log.warning("quota reservation not given back (Redis): %s", error)

        return release


async def _nothing() -> None:
    return None
