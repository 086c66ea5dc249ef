"""A streamed turn's events (api/streaming/relay.py) as OpenAI's `chat.completion.chunk` frames.

What a client reads, each frame a `data:` line without an event name:

- a first chunk whose delta is `{"role": "assistant", "content": ""}` (the turn was taken);
- a chunk per token, delta `{"content": "..."}`;
- a last chunk with `finish_reason`: `stop` or `length`, or `content_filter` for a refusal,
  whose delta then holds the policy's refusal message (the turn's reply in the transcript);
- with `stream_options.include_usage`, a chunk with no choices and the `usage` (every other
  chunk then has `"usage": null`);
- `data: [DONE]`.

Retracted text: the chunk after the turn's `retract` event carries the extension
`"x_retract": {"reason": "moderation" | "retry"}`: drop the content received before this
chunk. `moderation`: the reply was refused while it streamed, and this is the last chunk
(`content_filter`, the refusal message as its content); `retry`: the SLM call was retried
and the reply starts again with this chunk. A client that ignores the extension keeps the
text sent before it in front of what follows.

A turn that fails after the stream started (the SLM away, the time limit, a cancel), or a
relay that breaks off, ends with an error frame, `{"error": {...}}`, as OpenAI sends one
(its SDKs raise `APIError`), then `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.sse import KEEPALIVE_COMMENT, ServerSentEvent, format_sse_event

from api.openai.errors import error_body
from api.openai.responses import CompletionUsage, completion_id, finish_reason

DONE = format_sse_event(data_str="[DONE]")
_PING_SECONDS = 15.0


class ChunkWriter:
    """The frames of one streamed turn, event by event."""

    def __init__(self, model: str, workflow_id: str, include_usage: bool) -> None:
        self.model = model
        self.workflow_id = workflow_id
        self.include_usage = include_usage
        self.created = int(time.time())
        self.id = ""
        self.session_id = ""
        self.ended = False
        #: The reason of a `retract` not yet told to the client.
        self._retract: str | None = None
        self._sent = ""

    def frames(self, event: ServerSentEvent) -> list[bytes]:
        data: dict[str, Any] = json.loads(event.raw_data or "{}")
        kind = event.event
        if kind == "turn.accepted":
            self.id = completion_id(self.workflow_id, data["turn"])
            self.session_id = data["session_id"]
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "token":
            self._sent += data["delta"]
            return [self._chunk({"content": data["delta"]})]
        if kind == "retract":
            self._retract, self._sent = data.get("reason", "retry"), ""
            return []
        if kind in ("turn.completed", "turn.refused"):
            self.ended = True
            return self._final(data)
        if kind == "turn.cancelled":
            self.ended = True
            return [_error(409, "turn_cancelled", f"Turn {data['turn']} was cancelled.")]
        if kind == "error":
            self.ended = True
            return [_error(data["status"], data["code"], data["detail"])]
        return []  # the input verdict: the headers and the last chunk tell the outcome

    def interrupted(self) -> bytes:
        """The stream broke off before the turn ended (the turn goes on)."""
        where = f"GET /v1/conversation/{self.session_id}" if self.session_id else "the transcript"
        return _error(
            503,
            "stream_interrupted",
            f"The stream broke off before the turn ended; the turn goes on. Read its reply "
            f"in the session's transcript: {where}.",
        )

    def _final(self, body: dict[str, Any]) -> list[bytes]:
        reason = finish_reason(body["status"], body.get("finish_reason", ""))
        # A refusal's content is the refusal message; a completed turn replayed from its
        # Idempotency-Key comes without tokens: its reply in one delta.
        delta = {"content": body["reply"]} if reason == "content_filter" or not self._sent else {}
        frames = [self._chunk(delta, reason)]
        if self.include_usage:
            usage = CompletionUsage.of(body["usage"]).model_dump()
            frames.append(_frame({**self._head(), "choices": [], "usage": usage}))
        return frames

    def _head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def _chunk(self, delta: dict[str, str], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        chunk: dict[str, Any] = {**self._head(), "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        if self._retract is not None:
            chunk["x_retract"] = {"reason": self._retract}
            self._retract = None
        return _frame(chunk)


async def chunk_frames(
    events: AsyncIterator[ServerSentEvent], writer: ChunkWriter
) -> AsyncIterator[bytes]:
    """Every frame of the turn's stream, `[DONE]` last, with a keep-alive comment every
    15 s of silence (a turn waiting behind another of its session)."""
    async for frame in _with_pings(_frames(events, writer), _PING_SECONDS):
        yield frame


async def _frames(
    events: AsyncIterator[ServerSentEvent], writer: ChunkWriter
) -> AsyncIterator[bytes]:
    async for event in events:
        for frame in writer.frames(event):
            yield frame
    if not writer.ended:
        yield writer.interrupted()
    yield DONE


async def _with_pings(frames: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    pending = asyncio.ensure_future(anext(frames))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=seconds)
            if not done:
                yield KEEPALIVE_COMMENT
                continue
            try:
                frame = pending.result()
            except StopAsyncIteration:
                return
            yield frame
            pending = asyncio.ensure_future(anext(frames))
    finally:  # the client went away: stop the relay, which gives the stream's limits back
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)


def _error(status: int, code: str, message: str) -> bytes:
    return _frame(error_body(status, code, message))


def _frame(body: dict[str, Any]) -> bytes:
    return format_sse_event(data_str=json.dumps(body, separators=(",", ":")))
