"""The training-mode lock in Redis, as data and scripts: a leased, fenced key per tenant, which
every process reads.

`orchestrator:training:{<tenant>}:lock` holds the lease as JSON (token, holder, fence, reason,
enabled_at, expires_at), written with SET NX PX so it vanishes by itself at `expires_at`.
`orchestrator:training:{<tenant>}:fence` grows by one at every enable. Only a compare-and-act
script, given the holder's token, extends, restores or releases a lease, so a stale holder can
never touch a newer one; a released lease leaves its token behind
(`...:released:<token>`, until the lease would have expired) so that a renewal still in
flight cannot write it back. The braces are a Redis Cluster hash tag: a tenant's keys share
one slot, as a script's keys must. TrainingModeWorkflow is the only writer, through the activities
of
activities/training_lock.py, each idempotent, so Temporal may retry any of them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

# KEYS: lock, fence. ARGV: token, lease JSON, ttl ms, lowest acceptable fence.
# Holding the lease already (a retried acquire) returns it unchanged: the fence moves once.
ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  if cjson.decode(current).token == ARGV[1] then return {1, current} end
  return {0, current}
end
local fence = redis.call('INCR', KEYS[2])
if fence < tonumber(ARGV[4]) then
  fence = tonumber(ARGV[4])
  redis.call('SET', KEYS[2], fence)
end
local lease = cjson.decode(ARGV[2])
lease.fence = fence
local value = cjson.encode(lease)
redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[3])
return {1, value}
"""

# KEYS: lock, fence, released. ARGV: token, lease JSON, ttl ms, fence.
# 0: another holder's lease is there; 1: ours, rewritten; 2: it was gone, written back
# (with the fence counter, should Redis have lost that too); 3: it was released, left gone.
RENEW = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 3 end
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current).token ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[4]) then
  redis.call('SET', KEYS[2], ARGV[4])
end
if current then return 1 end
return 2
"""

# KEYS: lock, released. ARGV: token, ms the lease had left.
# 1: released; 0: not ours, or already gone. Either way its token is remembered as released.
RELEASE = """
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current).token == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

#: How long a released token is remembered: the longest a lease can live (a day,
#: workflows/training_mode/types.py MAX_TTL_SECONDS), so no late renewal brings it back.
RELEASED_TTL_MS = 24 * 3600 * 1000


@dataclass
class Lease:
    """The value of the lock key. `token` is the holder's secret; never shown to clients."""

    token: str
    holder: str
    fence: int
    reason: str
    enabled_at: str  # ISO 8601, UTC
    expires_at: str

    def ttl_ms(self) -> int:
        """Milliseconds left before `expires_at`, by this machine's clock."""
        return ms_until(self.expires_at)

    @classmethod
    def parse(cls, raw: bytes | str) -> Lease:
        fields: dict[str, Any] = json.loads(raw)
        return cls(**{name: fields[name] for name in cls.__dataclass_fields__})


@dataclass
class LeaseRequest:
    tenant: str
    lease: Lease


@dataclass
class AcquireResult:
    acquired: bool
    #: Ours (with the fence Redis gave it) when acquired, else the live lease of another holder.
    lease: Lease


@dataclass
class RenewResult:
    #: "renewed", "restored" (the key was gone), "held_by_other", or, with nothing written,
    #: "expired" or "released".
    outcome: str


@dataclass
class ReleaseRequest:
    tenant: str
    token: str
    #: The lease's `expires_at`: its token is remembered as released until then.
    expires_at: str = ""


@dataclass
class ReadRequest:
    tenant: str


@dataclass
class ReadResult:
    lease: Lease | None


def ms_until(instant: str) -> int:
    """Milliseconds from now to `instant` (ISO 8601), by this machine's clock."""
    return int(datetime.fromisoformat(instant).timestamp() * 1000 - time.time() * 1000)


def lease_json(lease: Lease) -> str:
    return json.dumps(asdict(lease), separators=(",", ":"))
