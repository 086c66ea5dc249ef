"""What an OpenAI client reads when a streamed reply is refused midway (a `retract`).

The bundled model's replies are never refused, so the turn runs on an SLM worker of this
test's own with a strict policy (tests/refused_window.py): its real Redis Stream is then
translated by the chunk writer of `POST /v1/chat/completions` and read with
the openai client's own chunk type.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from openai.types.chat import ChatCompletionChunk
from redis.asyncio import Redis
from temporalio.client import Client

from activities.slm import SlmActivities
from api.openai.chunks import ChunkWriter, chunk_frames
from api.streaming.relay import relay
from core.redis_keys import stream_key
from core.settings import Settings
from tests.helpers.refused_window import refused_midway


async def test_a_retracted_reply_ends_with_content_filter_and_x_retract(
    temporal: Client,
    settings: Settings,
    redis: Redis,
    slm_activities: Callable[..., SlmActivities],
    tmp_path: Path,
) -> None:
    session, stream_id = f"oai-retract-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    result, refusal = await refused_midway(
        temporal, settings, slm_activities, tmp_path, session, stream_id
    )
    assert (result.status, result.verdict.stage) == ("refused", "output")

    workflow_id = f"conversation:acme:{session}"
    writer = ChunkWriter(settings.slm_model, workflow_id, include_usage=True)
    events = relay(redis, stream_key(workflow_id, stream_id), "0-0", 10.0)
    frames = [frame async for frame in chunk_frames(events, writer)]
    data = [line[6:] for f in frames for line in f.decode().splitlines() if line[:6] == "data: "]
    assert data[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(item) for item in data[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    *tokens, last, usage = chunks
    assert all("x_retract" not in (c.model_extra or {}) for c in tokens)
    shown = "".join(c.choices[0].delta.content or "" for c in tokens)
    assert shown  # text went out before the window was refused
    # The last chunk takes it back and says why, with the refusal (the turn's reply).
    assert (last.model_extra or {})["x_retract"] == {"reason": "moderation"}
    assert last.choices[0].finish_reason == "content_filter"
    assert last.choices[0].delta.content == result.reply == refusal
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == result.usage.completion_tokens
