"""The SLM activity against the real llama.cpp server: a reply, and its output check.

Run with the SDK's ActivityEnvironment (the activity's context, no worker) so a policy can be
chosen for the check; the completion itself is real.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Callable
from pathlib import Path

from redis.asyncio import Redis
from temporalio.testing import ActivityEnvironment

from activities.redis_stream import StreamEvent, StreamTarget
from activities.slm import CompletionRequest, SlmActivities
from core.messages import ChatMessage
from core.moderation.reply_check import SENTENCE_STEP_CHARS, WINDOW_CHARS
from core.policy import load_policy
from core.redis_keys import stream_key
from core.settings import Settings

QUESTION = CompletionRequest(messages=[ChatMessage("user", "Name a colour.")], max_tokens=8)


async def test_the_reply_comes_back_with_its_output_verdict(
    settings: Settings, redis: Redis, slm_activities: Callable[..., SlmActivities]
) -> None:
    policy = load_policy(None)
    activities = slm_activities()
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
    settings: Settings, tmp_path: Path, redis: Redis, slm_activities: Callable[..., SlmActivities]
) -> None:
    # The bundled policy with one more rule that any reply of a letter matches.
    document = json.loads(load_policy(None).document.model_dump_json())
    document["categories"]["pii"]["rules"].append("[a-z]")
    path = tmp_path / "strict.json"
    path.write_text(json.dumps(document))
    activities = slm_activities(path)
    try:
        completion = await ActivityEnvironment().run(activities.complete, QUESTION)
    finally:
        await activities.close()
    assert completion.verdict is not None
    assert completion.verdict.decision == "refuse"
    assert (completion.verdict.stage, completion.verdict.category) == ("output", "pii")
    assert completion.verdict.message == document["categories"]["pii"]["message"]


async def test_a_streamed_reply_lands_token_by_token_and_a_retry_retracts_first(
    settings: Settings, redis: Redis, slm_activities: Callable[..., SlmActivities]
) -> None:
    target = StreamTarget(workflow_id=f"test:{uuid.uuid4().hex}", stream_id="s", turn=3)
    opening = [StreamEvent("turn.accepted", {"turn": 3})]
    request = dataclasses.replace(QUESTION, max_tokens=16, stream=target, opening=opening)
    activities = slm_activities(None)
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


async def test_concurrent_streams_each_run_to_their_end(
    settings: Settings, redis: Redis, slm_activities: Callable[..., SlmActivities]
) -> None:
    # The server takes one request at a time: the second waits, and must not cut the first
    # short (an activity whose stream ends without a finish reason fails and is retried).
    counting = CompletionRequest(
        messages=[ChatMessage("user", "Count from one to fifty, in words.")], max_tokens=32
    )
    activities = slm_activities(None)
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


async def test_the_classifier_reads_a_streamed_reply_where_sentences_end(
    settings: Settings, redis: Redis, slm_activities: Callable[..., SlmActivities], tmp_path: Path
) -> None:
    # The bundled policy with the classifier on replies too, and a `hate` threshold any text
    # reaches: the first sentence end past SENTENCE_STEP_CHARS refuses, mid-stream.
    document = json.loads(load_policy(None).document.model_dump_json())
    document["classifier"]["stages"] = ["input", "output"]
    document["categories"]["hate"]["threshold"] = 0.000001
    path = tmp_path / "classified-output.json"
    path.write_text(json.dumps(document))
    target = StreamTarget(workflow_id=f"test:{uuid.uuid4().hex}", stream_id="s", turn=1)
    story = CompletionRequest(
        messages=[ChatMessage("user", "Write a long story about a lighthouse keeper.")],
        max_tokens=200,
        stream=target,
    )
    activities = slm_activities(path)
    try:
        completion = await ActivityEnvironment().run(activities.complete, story)
    finally:
        await activities.close()
    assert completion.verdict is not None and completion.finish_reason == "content_filter"
    assert (completion.verdict.provider, completion.verdict.stage) == ("classifier", "output")
    assert SENTENCE_STEP_CHARS <= len(completion.text) < SENTENCE_STEP_CHARS + WINDOW_CHARS
    entries = await redis.xrange(stream_key(target.workflow_id, target.stream_id))
    sent = "".join(json.loads(e["data"])["delta"] for _, e in entries if e["event"] == "token")
    assert len(sent) < len(completion.text), "the delta that completed the sentence was held back"
