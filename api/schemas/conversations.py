"""Request and response bodies of the conversation routes (docs/interface.md, section 4)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.moderation.verdict import Verdict
from workflows.conversation.stream_events import step_body
from workflows.conversation.types import ConversationView, TurnRecord, TurnResult

SESSION_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
MAX_METADATA_BYTES = 4096


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str | None = Field(default=None, pattern=SESSION_ID_PATTERN)
    message: str = Field(min_length=1, max_length=8000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    on_busy: Literal["enqueue", "reject", "interrupt"] = Field(
        default="enqueue",
        description="if a turn of the session is running: wait for it (`enqueue`), answer 409 "
        "`turn_in_progress` and start nothing (`reject`), or cancel it, then run this one "
        "(`interrupt`)",
    )

    @field_validator("metadata")
    @classmethod
    def _small(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(metadata, separators=(",", ":")).encode())
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is {size} bytes; at most {MAX_METADATA_BYTES} are allowed")
        return metadata


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    turn: int = Field(ge=1)
    rating: Literal[-1, 1]
    comment: str = Field(default="", max_length=2000)


class VerdictOut(BaseModel):
    decision: Literal["allow", "refuse"]
    stage: Literal["input", "output"] | None
    category: str | None
    policy_version: str
    constitution_hash: str
    provider: str | None = Field(
        default=None, description="the layer that refused: rules, classifier or guard:<name>"
    )
    score: float | None = Field(
        default=None, description="its score: 1.0 for a rule, the classifier's, null for a guard"
    )
    basis: Literal["message", "conversation"] | None = Field(
        default=None,
        description="what it read: the message alone, or the message with the turns before "
        "it (a follow-up, or a request split over turns); null when allowed",
    )

    @classmethod
    def of(cls, verdict: Verdict) -> VerdictOut:
        return cls(
            decision=verdict.decision,  # type: ignore[arg-type]
            stage=verdict.stage,  # type: ignore[arg-type]
            category=verdict.category,
            policy_version=verdict.policy_version,
            constitution_hash=verdict.constitution_hash,
            provider=verdict.provider,
            score=verdict.score,
            basis=verdict.basis,  # type: ignore[arg-type]
        )


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class StepResponse(BaseModel):
    session_id: str
    turn: int
    status: Literal["completed", "refused"]
    reply: str
    verdict: VerdictOut
    usage: UsageOut
    training_mode: bool
    trace_id: str
    workflow_id: str
    run_id: str
    finish_reason: str | None = Field(
        default=None,
        description="why the SLM stopped: `stop`, or `length` at the reply's token limit; "
        "null for a refusal",
    )

    @classmethod
    def of(cls, result: TurnResult) -> StepResponse:
        return cls.model_validate(step_body(result))


class TurnOut(BaseModel):
    turn: int
    message: str
    reply: str
    status: str
    verdict: VerdictOut
    trace_id: str
    started_at: str
    completed_at: str
    metadata: dict[str, Any]
    #: Whether the turn ran under the tenant's training lease, and that lease's fence.
    training_mode: bool
    training_fence: int | None
    #: Who asked for the turn (their token's `sub`); empty for turns from before it was kept.
    actor: str

    @classmethod
    def of(cls, record: TurnRecord) -> TurnOut:
        return cls(
            turn=record.turn,
            message=record.message,
            reply=record.reply,
            status=record.status,
            verdict=VerdictOut.of(record.verdict),
            trace_id=record.trace_id,
            started_at=record.started_at,
            completed_at=record.completed_at,
            metadata=record.metadata,
            training_mode=record.training_mode,
            training_fence=record.training_fence,
            actor=record.actor,
        )


class MessageOut(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class ConversationOut(BaseModel):
    session_id: str
    status: Literal["active", "closed"]
    turns: list[TurnOut]
    training_mode: bool
    workflow_id: str
    run_id: str
    turn_count: int
    #: Turns older than `turns` that continue-as-new no longer carries.
    earlier_turns: int
    #: Pass as `before` for the page of older turns; null on the oldest page.
    next_before: int | None
    seed: list[MessageOut] = Field(
        default_factory=list,
        description="the earlier messages an OpenAI-style request seeded the session with, "
        "oldest first, as the SLM saw them (personal data redacted); empty for most sessions",
    )

    @classmethod
    def of(cls, view: ConversationView) -> ConversationOut:
        return cls(
            session_id=view.session_id,
            status=view.status,  # type: ignore[arg-type]
            turns=[TurnOut.of(record) for record in view.turns],
            training_mode=view.training_mode,
            workflow_id=view.workflow_id,
            run_id=view.run_id,
            turn_count=view.turn_count,
            earlier_turns=view.earlier_turns,
            next_before=view.next_before,
            seed=[MessageOut(role=m.role, content=m.content) for m in view.seed],  # type: ignore[arg-type]
        )
