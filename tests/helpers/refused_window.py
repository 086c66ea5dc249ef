"""A streamed turn whose reply is refused a few tokens in, on the real stack.

The bundled model's replies are never refused, so the turn's SLM activity runs on a worker
of the caller's own, checking against the bundled policy plus one rule that any 24
characters match: the short message passes, the reply is refused at its first window.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from activities.slm import SlmActivities
from core.policy import load_policy
from core.settings import Settings
from tests.helpers.direct_turns import step_directly
from workflows.conversation.types import TurnRequest, TurnResult

SHORT_STORY = "Tell me a story."


async def refused_midway(
    temporal: Client,
    settings: Settings,
    slm_activities: Callable[..., SlmActivities],
    tmp_path: Path,
    session: str,
    stream_id: str,
) -> tuple[TurnResult, str]:
    """The turn's result (tenant `acme`, at most 64 tokens) and the refusal message."""
    document = json.loads(load_policy(None).document.model_dump_json())
    document["categories"]["pii"]["rules"].append("[\\s\\S]{24}")
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps(document))
    queue = f"strict-slm-{uuid.uuid4().hex}"
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
                TurnRequest(message=SHORT_STORY, stream_id=stream_id),
                slm_task_queue=queue,
                max_reply_tokens=64,
            )
    finally:
        await slm.close()
    return result, str(document["categories"]["pii"]["message"])
