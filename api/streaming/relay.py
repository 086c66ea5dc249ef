"""From a turn's Redis Stream to SSE: every entry once, in order, from any point.

The stream is the buffer: a slow client only reads later, it never slows the SLM activity
or another stream. Entry ids are the SSE ids, so `Last-Event-ID` is where XREAD resumes.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi.sse import ServerSentEvent
from redis.asyncio import Redis

from api.metrics import STREAM_LAG
from core.errors import InvalidRequest

#: The events that end a turn's stream (docs/interface.md, section 4).
FINAL_EVENTS = frozenset({"turn.completed", "turn.refused", "turn.cancelled", "error"})
#: `<turn>-<seq>`, each a number a Redis Stream id can hold.
_EVENT_ID = re.compile(r"(\d{1,19})-(\d{1,19})")
_BLOCK_MS = 1000


def resume_point(last_event_id: str | None, turn: int) -> str:
    """Where to read from: after `last_event_id`, or from the start."""
    if last_event_id is None:
        return "0-0"
    found = _EVENT_ID.fullmatch(last_event_id.strip())
    if not found or int(found.group(1)) != turn:
        shown = last_event_id if len(last_event_id) <= 40 else last_event_id[:40] + "..."
        raise InvalidRequest(
            f"Last-Event-ID must be an id of this turn's stream, '{turn}-<seq>'; got {shown!r}."
        )
    return last_event_id.strip()


async def relay(
    redis: Redis, key: str, after: str, idle_timeout: float
) -> AsyncIterator[ServerSentEvent]:
    """The stream's entries after `after`, until the final one (or `idle_timeout` of silence)."""
    if await _ended_at_or_before(redis, key, after):
        return
    quiet_since = time.monotonic()
    while True:
        batches: Any = await redis.xread({key: after}, count=256, block=_BLOCK_MS)
        for _, entries in batches:
            for raw_id, raw_fields in entries:
                after, fields = _text(raw_id), _decoded(raw_fields)
                if "at" in fields:
                    STREAM_LAG.observe(max(0.0, time.time() - float(fields["at"])))
                yield ServerSentEvent(event=fields["event"], id=after, raw_data=fields["data"])
                if fields["event"] in FINAL_EVENTS:
                    return
            quiet_since = time.monotonic()
        if time.monotonic() - quiet_since > idle_timeout:
            raise TimeoutError(f"no event on {key} for {idle_timeout:.0f} s")


async def _ended_at_or_before(redis: Redis, key: str, after: str) -> bool:
    """Did the stream's final event come at or before `after` (nothing left to send)?"""
    last: Any = await redis.xrevrange(key, count=1)
    if not last or after == "0-0":
        return False
    raw_id, fields = last[0]
    return _decoded(fields)["event"] in FINAL_EVENTS and _id(_text(raw_id)) <= _id(after)


def _id(entry_id: str) -> tuple[int, int]:
    turn, _, seq = entry_id.partition("-")
    return int(turn), int(seq)


def _decoded(fields: Mapping[Any, Any] | None) -> dict[str, str]:
    return {_text(name): _text(value) for name, value in (fields or {}).items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
