"""A streamed turn's events in a Redis Stream: the buffer between the SLM and any SSE reader.

One stream per streamed turn, `orchestrator:stream:{<workflow id>}:<stream id>`, where the
stream id is chosen by the API when it asks for the turn. Entry ids are `<turn>-<seq>`
(Redis fills in `seq`), exactly the SSE ids of docs/interface.md, section 4, so a reader
resumes with XREAD after the client's `Last-Event-ID`. A pointer `...:turn:<turn>` names the
stream of a turn for the resume route. Both expire a while after the turn's last event. The
braces are a Redis Cluster hash tag: the append script's keys share one slot.

Each entry has `event`, `data` (JSON) and `at`, Redis's clock when it was appended, from
which the API measures how far its readers lag.

Writers: the workflow (accepted, verdict, the final event) and the SLM activity (tokens).
An SLM attempt appends under its attempt number; once a later attempt has written, an
earlier one's appends are dropped, so a zombie attempt can never interleave its text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from temporalio import activity

from core.redis_keys import pointer_key, stream_key

#: Attempt number of appends that are never fenced (the workflow's own events).
UNFENCED = 0

# KEYS: stream, pointer, attempt fence. ARGV: turn, attempt, maxlen, ttl seconds, how many
# of the events open the stream (written only into an empty stream), then event and data
# pairs. Returns the ids written ({} when a later attempt has written).
_APPEND = """
local first = 6
if redis.call('XLEN', KEYS[1]) > 0 then first = 6 + 2 * tonumber(ARGV[5]) end
local attempt = tonumber(ARGV[2])
if attempt > 0 then
  local top = tonumber(redis.call('GET', KEYS[3]) or '0')
  if attempt < top then return {} end
  redis.call('SET', KEYS[3], attempt, 'EX', ARGV[4])
end
local now = redis.call('TIME')
local at = now[1] .. '.' .. string.format('%06d', now[2])
local ids = {}
for i = first, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], ARGV[1] .. '-*',
                             'event', ARGV[i], 'data', ARGV[i + 1], 'at', at)
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], KEYS[1], 'EX', ARGV[4])
return ids
"""

#: Longest stream kept: far above a reply's tokens (max_tokens is at most 4096).
MAX_ENTRIES = 10_000


@dataclass
class StreamTarget:
    """Where a streamed turn's events go."""

    workflow_id: str
    stream_id: str
    turn: int
    #: How long the stream stays readable after its latest event.
    retention_seconds: int = 3600


@dataclass
class StreamEvent:
    event: str
    data: dict[str, Any]


@dataclass
class AppendRequest:
    target: StreamTarget
    events: list[StreamEvent] = field(default_factory=list)
    #: Written before `events`, and only into an empty stream: the opening of a turn whose
    #: SLM activity may or may not have written it (a turn that failed or was cancelled).
    opening: list[StreamEvent] = field(default_factory=list)


class TurnStreams:
    def __init__(self, redis: Redis) -> None:
        self._append = redis.register_script(_APPEND)

    async def append(
        self,
        target: StreamTarget,
        events: list[StreamEvent],
        attempt: int = UNFENCED,
        *,
        opening: list[StreamEvent] | None = None,
    ) -> list[str]:
        """Append `opening` (only into an empty stream), then `events`, in order, and return
        the ids written, `<turn>-<seq>`; [] if a later attempt of the SLM activity wrote."""
        key = stream_key(target.workflow_id, target.stream_id)
        opening = opening or []
        pairs: list[str] = []
        for item in [*opening, *events]:
            pairs += [item.event, json.dumps(item.data, separators=(",", ":"))]
        written = await self._append(
            keys=[key, pointer_key(target.workflow_id, target.turn), f"{key}:attempt"],
            args=[
                target.turn,
                attempt,
                MAX_ENTRIES,
                target.retention_seconds,
                len(opening),
                *pairs,
            ],
        )
        return [entry.decode() if isinstance(entry, bytes) else str(entry) for entry in written]

    @activity.defn(name="stream.append")
    async def append_activity(self, request: AppendRequest) -> list[str]:
        """The workflow's own events (accepted, verdict, the final one): a local activity."""
        return await self.append(request.target, request.events, opening=request.opening)
