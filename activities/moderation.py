"""Moderation: check one text against the policy, at one stage, through its layers.

`Moderator.check` is the check itself: the built-in engine (normalisation, rules, the
classifier) on a worker thread, so a check never holds up the worker's event loop, then each
guard model the policy configures for the stage. The first layer that refuses decides, and
the verdict names it (`provider`), with its `score` and `category`.

The input check runs as the `moderation.check` local activity: it stays inside the workflow
task, and its verdict is recorded in history, so the engine can change without breaking
replay. The output check runs inside the SLM activity, where the text is produced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.guard_model import GuardModels
from core.moderation.finding import Finding
from core.policy import Policy

if TYPE_CHECKING:  # the engine loads ONNX Runtime and scikit-learn: only workers need it
    from core.moderation.engine import Engine


@dataclass
class ModerationRequest:
    text: str
    stage: str  # "input" or "output"
    #: The session's recent answered user turns, oldest first, read together with `text`.
    context: list[str] = field(default_factory=list)
    #: Its recent user turns, refused ones included, oldest first: what a follow-up is read
    #: with (None: `context`, as requests recorded before this field read).
    asked: list[str] | None = None


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
    #: The layer that refused (`rules`, `classifier`, `guard:<name>`); None when allowed.
    provider: str | None = None
    #: Its score: 1.0 for a rule, the classifier's score, None for a guard model.
    score: float | None = None
    #: What it read: "message" (the message alone) or "conversation" (the message with the
    #: turns before it); None when allowed.
    basis: str | None = None


def public_verdict(verdict: Verdict) -> dict[str, Any]:
    """The verdict as clients see it: no internal fields, and the layer that refused."""
    return {
        "decision": verdict.decision,
        "stage": verdict.stage,
        "category": verdict.category,
        "policy_version": verdict.policy_version,
        "constitution_hash": verdict.constitution_hash,
        "provider": verdict.provider,
        "score": verdict.score,
        "basis": verdict.basis,
    }


def verdict_of(policy: Policy, finding: Finding | None, stage: str, seconds: float) -> Verdict:
    return Verdict(
        decision="refuse" if finding else "allow",
        stage=stage if finding else None,
        category=finding.category if finding else None,
        policy_version=policy.version,
        constitution_hash=policy.constitution_hash,
        message=policy.message(finding.category) if finding else "",
        checked_stage=stage,
        duration_seconds=seconds,
        provider=finding.provider if finding else None,
        score=finding.score if finding else None,
        basis=finding.basis if finding else None,
    )


class Moderator:
    """The policy's layers, built in and remote, for both stages."""

    def __init__(self, engine: Engine, guards: GuardModels | None = None) -> None:
        self.engine = engine
        self.policy = engine.policy
        self._guards = guards or GuardModels(engine.policy)

    @classmethod
    def load(cls, policy: Policy, threads: int = 2) -> Moderator:
        """Every layer `policy` asks for (the classifier loaded from its wheel)."""
        from core.moderation.engine import Engine

        return cls(Engine.load(policy, threads))

    async def check(
        self,
        text: str,
        stage: str,
        context: Sequence[str] = (),
        asked: Sequence[str] | None = None,
    ) -> Verdict:
        started = time.perf_counter()
        outcome = await asyncio.to_thread(self.engine.check, text, stage, context, asked)
        finding = outcome.finding or await self._guards.check(text, stage, context)
        return verdict_of(self.policy, finding, stage, time.perf_counter() - started)

    def check_window(self, text: str) -> Verdict | None:
        """The cheap layers on a window of a growing reply: the refusal, if refused."""
        finding = self.engine.check_rules(text)
        return verdict_of(self.policy, finding, "output", 0.0) if finding else None

    async def check_sentence(self, text: str) -> Verdict | None:
        """The built-in layers on a window that ends a sentence: the refusal, if refused."""
        outcome = await asyncio.to_thread(self.engine.check, text, "output")
        return verdict_of(self.policy, outcome.finding, "output", 0.0) if outcome.finding else None

    async def close(self) -> None:
        await self._guards.close()


class ModerationActivities:
    def __init__(self, moderator: Moderator) -> None:
        self._moderator = moderator

    @activity.defn(name="moderation.check")
    async def check(self, request: ModerationRequest) -> Verdict:
        return await self._moderator.check(
            request.text, request.stage, request.context, request.asked
        )
