"""A moderation check's request and its verdict, as the workflows record them and the API
shows them (`public_verdict`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class ScanRequest:
    """Texts to check as a turn's input would be, outside any conversation: by the
    tenant's policy, or by the floor with `candidate` additions (a dry run)."""

    texts: list[str]
    tenant: str = ""
    candidate: dict[str, Any] | None = None


@dataclass
class Scan:
    verdict: Verdict
    #: Each policy category's score, 0 to 1.
    scores: dict[str, float]
