"""The moderation activity: check one text against the active policy, at one stage.

Run as a local activity: it is fast, needs no other system, and a local activity keeps the
check inside the workflow task instead of a round trip through the task queue.
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


class ModerationActivities:
    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    @activity.defn(name="moderation.check")
    async def check(self, request: ModerationRequest) -> Verdict:
        started = time.perf_counter()
        match = self._policy.first_match(request.text)
        return Verdict(
            decision="refuse" if match else "allow",
            stage=request.stage if match else None,
            category=match.category if match else None,
            policy_version=self._policy.version,
            constitution_hash=self._policy.constitution_hash,
            message=match.message if match else "",
            checked_stage=request.stage,
            duration_seconds=time.perf_counter() - started,
        )
