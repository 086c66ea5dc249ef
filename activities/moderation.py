"""Moderation: check one text against the policy, at one stage.

`moderate` is the check itself. The input check runs as the `moderation.check` local
activity: it is fast, needs no other system, stays inside the workflow task, and its verdict
is recorded in history, so the rules can change without breaking replay. The output check
runs inside the SLM activity, where the text is produced (one workflow round trip less).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from temporalio import activity

from core.policy import Policy


@dataclass
class ModerationRequest:
    text: str
    stage: str  # "input" or "output"


@dataclass
class Verdict:
    decision: str  # "allow" or "refuse"
    stage: str | None  # the stage that refused, None when allowed
    category: str | None
    policy_version: str
    constitution_hash: str
    #: The policy's refusal message for `category`; empty when allowed.
    message: str = ""
    checked_stage: str = ""
    duration_seconds: float = 0.0


def moderate(policy: Policy, text: str, stage: str) -> Verdict:
    started = time.perf_counter()
    match = policy.first_match(text)
    return Verdict(
        decision="refuse" if match else "allow",
        stage=stage if match else None,
        category=match.category if match else None,
        policy_version=policy.version,
        constitution_hash=policy.constitution_hash,
        message=match.message if match else "",
        checked_stage=stage,
        duration_seconds=time.perf_counter() - started,
    )


class ModerationActivities:
    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    @activity.defn(name="moderation.check")
    async def check(self, request: ModerationRequest) -> Verdict:
        return moderate(self._policy, request.text, request.stage)
