"""What GET /v1/usage reports: turns, prompt and completion tokens and refusals by category,
by day or by subject, over a span of days, from the day hashes the worker settles into
(core/usage.py); and the quotas of the current window."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

from redis.asyncio import Redis

from core.settings import Settings
from core.usage import day_key, subjects_key, window_keys, window_of

#: The longest span one report reads.
MAX_DAYS = 366


def _days(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def _counts(raw: dict[Any, Any]) -> Counter[str]:
    return Counter({_text(k): int(v) for k, v in raw.items()})


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def summary(counts: Counter[str]) -> dict[str, Any]:
    refused = {
        k.removeprefix("refused:"): v for k, v in counts.items() if k.startswith("refused:") and v
    }
    return {
        "turns": counts["turns"],
        "prompt_tokens": counts["prompt_tokens"],
        "completion_tokens": counts["completion_tokens"],
        "refused": dict(sorted(refused.items())),
    }


async def usage(
    redis: Redis,
    tenant: str,
    subject: str | None,
    start: dt.date,
    end: dt.date,
    group_by: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The total and the groups (by `day` or by `subject`) of `tenant`'s usage from `start`
    to `end` (UTC days, both included); only `subject`'s when given."""
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    total: Counter[str] = Counter()
    for day in _days(start, end):
        if subject is not None or group_by == "day":
            counts = _counts(await redis.hgetall(day_key(tenant, day, subject)))
            groups[subject if group_by == "subject" and subject else day] += counts
            total += counts
            continue
        for who in sorted(_text(s) for s in await redis.smembers(subjects_key(tenant, day))):
            counts = _counts(await redis.hgetall(day_key(tenant, day, who)))
            groups[who] += counts
            total += counts
    rows = [{"key": key, **summary(counts)} for key, counts in sorted(groups.items()) if counts]
    return summary(total), rows


async def quota(
    redis: Redis, settings: Settings, tenant: str, subject: str, now: dt.datetime
) -> dict[str, Any]:
    """The current window's quotas of `tenant` (and `subject`), and what they used."""
    limits = settings.limits_for(tenant)
    number, ends = window_of(now, settings.quota_window_seconds)
    used = [int(v or 0) for v in await redis.mget(window_keys(tenant, subject, number))]
    return {
        "window_seconds": settings.quota_window_seconds,
        "window_ends_at": ends.isoformat(),
        "tokens": {"used": used[0], "limit": limits.tokens_per_window},
        "turns": {"used": used[1], "limit": limits.turns_per_window},
        "subject_tokens": {"used": used[2], "limit": limits.subject_tokens_per_window},
        "subject_turns": {"used": used[3], "limit": limits.subject_turns_per_window},
    }
