"""What an OpenAI client reads when a streamed reply is refused midway (a `retract`).

The bundled model's replies are never refused, so the turn runs on an SLM worker of this
test's own with a strict policy (as in tests/test_streaming_faults.py): its real Redis
Stream is then translated by the chunk writer of `POST /v1/chat/completions` and read with
the openai client's own chunk type.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from openai.types.chat import ChatCompletionChunk
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.worker import Worker

from activities.slm import SlmActivities
from activities.turn_stream import stream_key
from api.openai_chunks import ChunkWriter, chunk_frames
from api.stream_relay import relay
from core.policy import load_policy
from core.settings import Settings
from tests.direct_turns import step_directly
from workflows.turns import TurnRequest


async def test_a_retracted_reply_ends_with_content_filter_and_x_retract(
    temporal: Client,
    settings: Settings,
    redis: Redis,
    slm_activities: Callable[..., SlmActivities],
    tmp_path: Path,
) -> None:
    document = json.loads(load_policy(None).document.model_dump_json())
    document["categories"]["pii"]["rules"].append("[\\s\\S]{24}")  # any 24 characters
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps(document))
    queue, session = f"strict-slm-{uuid.uuid4().hex}", f"oai-retract-{uuid.uuid4().hex[:10]}"
    stream_id = uuid.uuid4().hex
    slm = slm_activities(strict)
    try:
        async with Worker(
            temporal,
            task_queue=queue,
            activities=[slm.complete],
            max_heartbeat_throttle_interval=timedelta(milliseconds=500),
        ):
            result = await step_directly(
                temporal,
                settings,
                session,
                TurnRequest(message="Tell me a story.", stream_id=stream_id),
                slm_task_queue=queue,
                max_reply_tokens=64,
            )
    finally:
        await slm.close()
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
    assert last.choices[0].delta.content == result.reply == document["categories"]["pii"]["message"]
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == result.usage.completion_tokens
