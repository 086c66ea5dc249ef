"""The SLM activity against the real llama.cpp server: a reply, and its output check.

Run with the SDK's ActivityEnvironment (the activity's context, no worker) so a policy can be
chosen for the check; the completion itself is real.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path

from redis.asyncio import Redis
from temporalio.testing import ActivityEnvironment

from activities.slm import ChatMessage, CompletionRequest, SlmActivities
from activities.turn_stream import StreamEvent, StreamTarget, TurnStreams, stream_key
from core.policy import load_policy
from core.settings import Settings

QUESTION = CompletionRequest(messages=[ChatMessage("user", "Name a colour.")], max_tokens=8)


async def test_the_reply_comes_back_with_its_output_verdict(
    settings: Settings, redis: Redis
) -> None:
    policy = load_policy(None)
    activities = SlmActivities(settings, policy, TurnStreams(redis))
    try:
        completion = await ActivityEnvironment().run(activities.complete, QUESTION)
    finally:
        await activities.close()
    assert completion.text.strip() and completion.completion_tokens > 0
    assert completion.verdict is not None
    assert completion.verdict.checked_stage == "output"
    assert completion.verdict.decision == "allow"
    assert completion.verdict.constitution_hash == policy.constitution_hash


async def test_a_reply_the_policy_refuses_is_marked_refused_at_output(
    settings: Settings, tmp_path: Path, redis: Redis
) -> None:
    # The bundled policy with one more rule that any reply of a letter matches.
    document = json.loads(load_policy(None).document.model_dump_json())
    document["categories"]["pii"]["rules"].append("[a-z]")
    path = tmp_path / "strict.json"
    path.write_text(json.dumps(document))
    activities = SlmActivities(settings, load_policy(path), TurnStreams(redis))
    try:
        completion = await ActivityEnvironment().run(activities.complete, QUESTION)
    finally:
        await activities.close()
    assert completion.verdict is not None
    assert completion.verdict.decision == "refuse"
    assert (completion.verdict.stage, completion.verdict.category) == ("output", "pii")
    assert completion.verdict.message == document["categories"]["pii"]["message"]


async def test_a_streamed_reply_lands_token_by_token_and_a_retry_retracts_first(
    settings: Settings, redis: Redis
) -> None:
    target = StreamTarget(workflow_id=f"test:{uuid.uuid4().hex}", stream_id="s", turn=3)
    opening = [StreamEvent("turn.accepted", {"turn": 3})]
    request = dataclasses.replace(QUESTION, max_tokens=16, stream=target, opening=opening)
    activities = SlmActivities(settings, load_policy(None), TurnStreams(redis))
    environment = ActivityEnvironment()
    try:
        first = await environment.run(activities.complete, request)
        environment.info = dataclasses.replace(environment.info, attempt=2)
        second = await environment.run(activities.complete, request)
    finally:
        await activities.close()
    entries = await redis.xrange(stream_key(target.workflow_id, target.stream_id))
    assert [entry_id.split("-")[0] for entry_id, _ in entries] == ["3"] * len(entries)
    assert [int(entry_id.split("-")[1]) for entry_id, _ in entries] == list(range(len(entries)))
    events = [(fields["event"], json.loads(fields["data"])) for _, fields in entries]
    retract = events.index(("retract", {"reason": "retry"}))
    assert events[0] == ("turn.accepted", {"turn": 3})  # written once, by the first attempt
    assert [e for e, _ in events].count("turn.accepted") == 1
    assert "".join(d["delta"] for e, d in events[:retract] if e == "token") == first.text
    assert "".join(d["delta"] for e, d in events[retract:] if e == "token") == second.text
    retried = [d["index"] for e, d in events[retract:] if e == "token"]
    assert retried == list(range(len(retried))) and retried  # numbered afresh after retract


async def test_concurrent_streams_each_run_to_their_end(settings: Settings, redis: Redis) -> None:
    # The server takes one request at a time: the second waits, and must not cut the first
    # short (an activity whose stream ends without a finish reason fails and is retried).
    counting = CompletionRequest(
        messages=[ChatMessage("user", "Count from one to fifty, in words.")], max_tokens=32
    )
    activities = SlmActivities(settings, load_policy(None), TurnStreams(redis))
    requests = [
        dataclasses.replace(
            counting,
            stream=StreamTarget(workflow_id=f"test:{uuid.uuid4().hex}", stream_id="s", turn=1),
        )
        for _ in range(2)
    ]
    try:
        completions = await asyncio.gather(
            *(ActivityEnvironment().run(activities.complete, request) for request in requests)
        )
    finally:
        await activities.close()
    for completion in completions:
        assert completion.finish_reason in ("stop", "length") and completion.text.strip()
