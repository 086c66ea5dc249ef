"""Token usage: each turn counted once, by tenant, by subject and by day, and the quotas of
a window (a day by default) that admission holds turns to.

A turn's usage is settled where it is known, at the end of its SLM activity, keyed by the
turn (`<workflow id>/<turn>`): a retried attempt replaces what an earlier attempt of the
same turn settled, so the turn counts once, with the numbers its record keeps. The API
reserves a turn's worst case (its context budget and its reply's maximum) before starting
it and gives the reservation back once the turn has answered; a reservation an API never
gave back (it crashed) lapses after the longest a turn may take.

Every key of a tenant shares its Redis Cluster hash tag, so that each script runs whole.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from temporalio.common import MetricMeter

log = logging.getLogger("orchestrator.usage")

#: Kept this long, then gone: the day hashes a usage report reads.
DAYS_KEPT = 400
_DAY = 86400

#: Settle one turn: replace what this turn counted before (an earlier attempt), in the day
#: hashes of the tenant and the subject and in the window's counters.
#: KEYS: turns hash, tenant day hash, subject day hash, subjects of the day, tenant window
#:       tokens, tenant window turns, subject window tokens, subject window turns
#: ARGV: turn key, prompt, completion, refused category or "", subject, window ttl, day ttl
SETTLE = """
local before = redis.call('HGET', KEYS[1], ARGV[1])
local p0, c0, r0, counted = 0, 0, '', 0
if before then
  local a, b, r = string.match(before, '^(%d+),(%d+),(.*)$')
  p0, c0, r0, counted = tonumber(a), tonumber(b), r, 1
end
local p, c, r = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('HSET', KEYS[1], ARGV[1], p .. ',' .. c .. ',' .. r)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
for i = 2, 3 do
  redis.call('HINCRBY', KEYS[i], 'turns', 1 - counted)
  redis.call('HINCRBY', KEYS[i], 'prompt_tokens', p - p0)
  redis.call('HINCRBY', KEYS[i], 'completion_tokens', c - c0)
  if r0 ~= '' then redis.call('HINCRBY', KEYS[i], 'refused:' .. r0, -1) end
  if r ~= '' then redis.call('HINCRBY', KEYS[i], 'refused:' .. r, 1) end
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[7]))
end
redis.call('SADD', KEYS[4], ARGV[5])
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[7]))
for i = 5, 7, 2 do
  redis.call('INCRBY', KEYS[i], (p + c) - (p0 + c0))
  redis.call('INCRBY', KEYS[i + 1], 1 - counted)
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[6]))
  redis.call('EXPIRE', KEYS[i + 1], tonumber(ARGV[6]))
end
return 1 - counted
"""

#: Reserve a turn's worst case unless a quota would pass; {1} or {0, which quota}.
#: KEYS: tenant window tokens, tenant window turns, subject window tokens, subject window
#:       turns, tenant reservations, subject reservations
#: ARGV: now ms, reservation id, tokens, lease ms, then the four limits (0: none), in KEYS'
#:       order
RESERVE = """
local now, id, tokens = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local names = {'tokens', 'turns', 'subject_tokens', 'subject_turns'}
for z = 5, 6 do redis.call('ZREMRANGEBYSCORE', KEYS[z], '-inf', now) end
for i = 1, 4 do
  local limit = tonumber(ARGV[4 + i])
  if limit > 0 then
    local zset = KEYS[i <= 2 and 5 or 6]
    local held = 0
    for _, member in ipairs(redis.call('ZRANGE', zset, 0, -1)) do
      held = held + ((i % 2 == 1) and tonumber(string.match(member, '|(%d+)$')) or 1)
    end
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    local wanted = (i % 2 == 1) and tokens or 1
    if used + held + wanted > limit then return {0, names[i]} end
  end
end
for z = 5, 6 do
  redis.call('ZADD', KEYS[z], now + tonumber(ARGV[4]), id .. '|' .. tokens)
  redis.call('PEXPIRE', KEYS[z], tonumber(ARGV[4]) + 1000)
end
return {1}
"""


@dataclass(frozen=True)
class Account:
    """Whose a turn is, for its usage: the tenant, the subject who asked, and the turn."""

    tenant: str
    subject: str
    #: `<workflow id>/<turn>`: one per turn of a session, across its runs.
    turn: str


def day_of(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).date().isoformat()


def window_of(moment: dt.datetime, seconds: int) -> tuple[int, dt.datetime]:
    """The window `moment` is in (its number) and when it ends."""
    epoch = int(moment.timestamp())
    number = epoch // seconds
    return number, dt.datetime.fromtimestamp((number + 1) * seconds, dt.UTC)


def settle_keys(account: Account, day: str, window: int) -> list[str]:
    t, s = account.tenant, account.subject
    return [
        f"usage:{{{t}}}:turns:{day}",
        f"usage:{{{t}}}:day:{day}",
        f"usage:{{{t}}}:subject:{s}:day:{day}",
        f"usage:{{{t}}}:subjects:{day}",
        *window_keys(t, s, window),
    ]


def window_keys(tenant: str, subject: str, window: int) -> list[str]:
    return [
        f"usage:{{{tenant}}}:window:{window}:tokens",
        f"usage:{{{tenant}}}:window:{window}:turns",
        f"usage:{{{tenant}}}:subject:{subject}:window:{window}:tokens",
        f"usage:{{{tenant}}}:subject:{subject}:window:{window}:turns",
    ]


def reservation_keys(tenant: str, subject: str) -> list[str]:
    return [f"usage:{{{tenant}}}:reserved", f"usage:{{{tenant}}}:subject:{subject}:reserved"]


def day_key(tenant: str, day: str, subject: str | None = None) -> str:
    if subject is None:
        return f"usage:{{{tenant}}}:day:{day}"
    return f"usage:{{{tenant}}}:subject:{subject}:day:{day}"


def subjects_key(tenant: str, day: str) -> str:
    return f"usage:{{{tenant}}}:subjects:{day}"


def day_ttl() -> int:
    return DAYS_KEPT * _DAY


class UsageLedger:
    """Settles turns' usage (the worker's SLM activity)."""

    def __init__(self, redis: Redis, window_seconds: int, meter: MetricMeter) -> None:
        self._settle = redis.register_script(SETTLE)
        self._window = window_seconds
        self._tokens = meter.create_counter(
            "orchestrator_tokens_total", "Tokens of the tenants' turns, prompt and completion."
        )

    async def settle(
        self,
        account: Account,
        prompt_tokens: int,
        completion_tokens: int,
        refused: str | None,
    ) -> None:
        """Count the turn (again: a later attempt's numbers replace an earlier one's), now.
        Best effort: while Redis is away the turn goes on, uncounted, and a warning says so."""
        when = dt.datetime.now(dt.UTC)
        number, _ = window_of(when, self._window)
        keys = settle_keys(account, day_of(when), number)
        args: list[str | int] = [
            account.turn,
            prompt_tokens,
            completion_tokens,
            refused or "",
            account.subject,
            2 * self._window,
            day_ttl(),
        ]
        try:
            await self._settle(keys=keys, args=args)
        except RedisError as error:
            log.warning("usage of %s not counted (Redis): %s", account.turn, error)
        labels = {"tenant": account.tenant}
        self._tokens.add(prompt_tokens, {**labels, "kind": "prompt"})
        self._tokens.add(completion_tokens, {**labels, "kind": "completion"})
