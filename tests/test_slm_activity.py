"""The SLM activity against the real llama.cpp server: a reply, and its output check.

Run with the SDK's ActivityEnvironment (the activity's context, no worker) so a policy can be
chosen for the check; the completion itself is real.
"""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.slm import ChatMessage, CompletionRequest, SlmActivities
from core.policy import load_policy
from core.settings import Settings

QUESTION = CompletionRequest(messages=[ChatMessage("user", "Name a colour.")], max_tokens=8)


async def test_the_reply_comes_back_with_its_output_verdict(settings: Settings) -> None:
    policy = load_policy(None)
    activities = SlmActivities(settings, policy)
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
    settings: Settings, tmp_path: Path
) -> None:
    # The bundled policy with one more rule that any reply of a letter matches.
    document = json.loads(load_policy(None).document.model_dump_json())
    document["categories"]["pii"]["rules"].append("[a-z]")
    path = tmp_path / "strict.json"
    path.write_text(json.dumps(document))
    activities = SlmActivities(settings, load_policy(path))
    try:
        completion = await ActivityEnvironment().run(activities.complete, QUESTION)
    finally:
        await activities.close()
    assert completion.verdict is not None
    assert completion.verdict.decision == "refuse"
    assert (completion.verdict.stage, completion.verdict.category) == ("output", "pii")
    assert completion.verdict.message == document["categories"]["pii"]["message"]
