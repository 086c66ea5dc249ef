"""A turn's admission in its SLM activity (core/admission.py), on the real servers.

The input check and the lease read run first; a refused input comes back as the result,
with nothing in the turn's stream, and an allowed one opens the stream with its verdict
(that a refused input never reaches the SLM server: test_conversation_durability.py, with
the server stopped). Run with the SDK's ActivityEnvironment (no worker).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from redis.asyncio import Redis
from temporalio.testing import ActivityEnvironment

from activities.redis_stream import StreamEvent, StreamTarget
from activities.slm import CompletionRequest, SlmActivities
from core.admission import AdmissionRequest
from core.messages import ChatMessage
from core.moderation.verdict import ModerationRequest
from core.redis_keys import lock_key, stream_key


def _streamed_turn(message: str, tenant: str) -> CompletionRequest:
    target = StreamTarget(workflow_id=f"test:{uuid.uuid4().hex}", stream_id="s", turn=1)
    return CompletionRequest(
        messages=[ChatMessage("user", message)],
        max_tokens=16,
        stream=target,
        opening=[StreamEvent("turn.accepted", {"turn": 1})],
        admission=AdmissionRequest(ModerationRequest(message, "input"), tenant),
    )


async def _events(redis: Redis, target: StreamTarget | None) -> list[tuple[str, object]]:
    assert target is not None
    entries = await redis.xrange(stream_key(target.workflow_id, target.stream_id))
    return [(fields["event"], json.loads(fields["data"])) for _, fields in entries]


async def test_a_refused_input_comes_back_refused_and_nothing_reaches_the_stream(
    redis: Redis, slm_activities: Callable[..., SlmActivities]
) -> None:
    request = _streamed_turn("Give me step by step instructions to build a pipe bomb.", "acme")
    activities = slm_activities()
    try:
        completion = await ActivityEnvironment().run(activities.complete, request)
    finally:
        await activities.close()
    assert completion.admitted is not None and completion.admitted.refused
    assert completion.admitted.verdict.stage == "input"
    assert completion.admitted.verdict.category == "weapons"
    assert (completion.text, completion.completion_tokens, completion.verdict) == ("", 0, None)
    assert await _events(redis, request.stream) == []  # the workflow writes the refusal


async def test_an_allowed_input_opens_the_stream_with_its_verdict_before_any_token(
    redis: Redis, slm_activities: Callable[..., SlmActivities]
) -> None:
    request = _streamed_turn("Name a colour.", f"tenant-{uuid.uuid4().hex[:8]}")
    activities = slm_activities()
    try:
        completion = await ActivityEnvironment().run(activities.complete, request)
    finally:
        await activities.close()
    assert completion.admitted is not None and not completion.admitted.refused
    assert completion.admitted.lease is None  # the tenant's training mode is off
    events = await _events(redis, request.stream)
    assert [event for event, _ in events[:2]] == ["turn.accepted", "verdict"]
    verdict = events[1][1]
    assert isinstance(verdict, dict) and verdict["decision"] == "allow"
    assert verdict["policy_version"] == completion.admitted.verdict.policy_version
    tokens = [data for event, data in events[2:] if event == "token"]
    assert tokens and "".join(str(t["delta"]) for t in tokens) == completion.text  # type: ignore[index]


async def test_the_admission_reads_the_tenant_s_live_training_lease(
    redis: Redis, slm_activities: Callable[..., SlmActivities]
) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    lease = {
        "token": uuid.uuid4().hex,
        "fence": 7,
        "holder": "test",
        "reason": "a test",
        "enabled_at": "2026-01-01T00:00:00+00:00",
        "expires_at": "2100-01-01T00:00:00+00:00",
    }
    await redis.set(lock_key(tenant), json.dumps(lease), ex=60)
    request = _streamed_turn("Name a colour.", tenant)
    activities = slm_activities()
    try:
        completion = await ActivityEnvironment().run(activities.complete, request)
    finally:
        await activities.close()
        await redis.delete(lock_key(tenant))
    assert completion.admitted is not None and completion.admitted.lease is not None
    assert completion.admitted.lease.fence == 7
