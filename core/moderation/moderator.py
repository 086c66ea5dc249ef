"""Moderation: check one text against the policy, at one stage, through its layers.

`Moderator.check` is the check itself: the built-in engine (normalisation, rules, the
classifier) on a worker thread, so a check never holds up the worker's event loop, then each
guard model the policy configures for the stage. The first layer that refuses decides, and
the verdict names it (`provider`), with its `score` and `category`.

The input check runs inside the SLM activity (core/admission.py) or, for sessions that
predate it, as the `moderation.check` local activity (activities/moderation.py); the output
check runs inside the SLM activity, where the text is produced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.moderation.finding import Finding
from core.moderation.guard_models import GuardModels
from core.moderation.verdict import Verdict
from core.policy import Policy

if TYPE_CHECKING:  # the engine loads ONNX Runtime and scikit-learn: only workers need it
    from core.moderation.engine import Engine


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

    def with_policy(self, policy: Policy) -> Moderator:
        """This moderator's layers (the same classifier and guard models) for `policy`, a
        tenant's stricter one."""
        return Moderator(self.engine.with_policy(policy), self._guards)

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

    async def scan(self, text: str) -> tuple[Verdict, dict[str, float]]:
        """`text` checked as a turn's input with no conversation before it, and each
        category's score (for POST /v1/moderations)."""
        started = time.perf_counter()
        outcome = await asyncio.to_thread(self.engine.check, text, "input")
        finding = outcome.finding or await self._guards.check(text, "input", ())
        scores = await asyncio.to_thread(self.engine.category_scores, text, finding)
        return verdict_of(self.policy, finding, "input", time.perf_counter() - started), scores

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
