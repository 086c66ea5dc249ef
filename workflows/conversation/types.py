"""The dataclasses a conversation workflow takes, keeps and returns.

One input in, one result out for every run, update, signal and query, so fields can be
added (with defaults) without breaking running workflows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.events import PublishRequest
    from activities.slm import DEFAULT_TEMPERATURE
    from core.messages import ChatMessage
    from core.moderation.verdict import Verdict


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Sampling:
    """A client's own sampling for one turn (the OpenAI-compatible route); None: the session's."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)

    def for_call(self, max_reply_tokens: int) -> dict[str, Any]:
        """The SLM request's sampling: the client's, else the session's and the defaults."""
        temperature = DEFAULT_TEMPERATURE if self.temperature is None else self.temperature
        return {
            "max_tokens": self.max_tokens or max_reply_tokens,
            "temperature": temperature,
            "top_p": self.top_p,
            "stop": self.stop,
        }


@dataclass
class TurnRequest:
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    trace_id: str = ""
    traceparent: str = ""
    #: Set for a streamed turn: names its Redis Stream (chosen by the API).
    stream_id: str = ""
    #: Who asks: the token's `sub`, and whether they are an admin of the tenant (who may
    #: use any session of it; a user only their own).
    actor: str = ""
    actor_is_admin: bool = False
    #: A digest of the request's body (the API's): a repeated Idempotency-Key must repeat it.
    fingerprint: str = ""
    sampling: Sampling | None = None
    #: The conversation the client holds before this message (workflows/conversation/history.py):
    # the
    #: digest of each earlier message, which must agree with the session's own.
    history: list[str] = field(default_factory=list)
    #: Earlier messages that start the session's context, when the API found it unseeded
    #: and unanswered (its PII already redacted); checked by the turn's admission.
    seed: list[ChatMessage] = field(default_factory=list)
    #: What the turn does if another one of the session is running: wait its turn
    #: (`enqueue`), be refused (`reject`), or cancel the running one first (`interrupt`).
    on_busy: str = "enqueue"


@dataclass
class TurnResult:
    session_id: str
    turn: int
    status: str  # "completed" or "refused"
    reply: str
    verdict: Verdict
    usage: Usage
    training_mode: bool
    trace_id: str
    workflow_id: str
    run_id: str
    #: Every moderation check of the turn, in order (input, then output if reached).
    checks: list[Verdict] = field(default_factory=list)
    #: Seconds spent per stage, for orchestrator_turn_duration_seconds.
    timings: dict[str, float] = field(default_factory=dict)
    #: The request's fingerprint, kept with the result of an Idempotency-Key.
    fingerprint: str = ""
    #: Why the SLM stopped (`stop`, `length`); empty when it was not called.
    finish_reason: str = ""


@dataclass
class TurnRecord:
    turn: int
    message: str
    reply: str
    status: str
    verdict: Verdict
    trace_id: str
    started_at: str
    completed_at: str
    usage: Usage = field(default_factory=Usage)
    training_mode: bool = False
    feedback: list[Feedback] = field(default_factory=list)
    #: The client's `metadata` of the step request, kept with the turn and in its event.
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The W3C trace context of the request, carried to the turn's event.
    traceparent: str = ""
    #: The fence of the training lease the turn ran under; None when not in training mode.
    training_fence: int | None = None
    #: A streamed turn's stream, and the id of its final event (replayed once it expired).
    stream_id: str = ""
    stream_final_id: str = ""
    #: A failed turn: why, as the problem its stream's `error` event carries.
    problem: dict[str, Any] | None = None
    #: Who asked for the turn (the token's `sub`).
    actor: str = ""


@dataclass
class Feedback:
    turn: int
    rating: int
    comment: str = ""
    trace_id: str = ""
    traceparent: str = ""
    actor: str = ""


@dataclass
class CancelRequest:
    turn: int
    trace_id: str = ""
    traceparent: str = ""


@dataclass
class CloseRequest:
    reason: str = "closed by client"
    trace_id: str = ""
    traceparent: str = ""
    actor: str = ""


@dataclass
class ConversationSettings:
    """What the API decides at start; carried unchanged across continue-as-new."""

    tenant: str
    session_id: str
    slm_task_queue: str
    events_topic: str
    idle_timeout_seconds: float = 86400.0
    context_token_budget: int = 1024
    max_reply_tokens: int = 256
    #: Continue as new after this many turns in one run; 0: only when Temporal suggests it.
    turns_per_run: int = 0
    #: How long a streamed turn's events stay readable after its latest one.
    stream_retention_seconds: int = 3600
    #: A turn still running after this long (a stuck SLM call) is stopped and ends `failed`.
    max_turn_seconds: float = 300.0
    #: The `sub` of the token that started the session: only they (and the tenant's admins)
    #: may use it. Empty for sessions started before sessions had owners: any user may.
    owner: str = ""
    #: How long publishing one event retries before the run looks again at what is due
    #: (closing, continuing as new); the event stays in the outbox and is tried again.
    publish_give_up_seconds: float = 600.0


@dataclass
class ConversationState:
    """Everything a run knows; continue-as-new passes it whole to the next run."""

    settings: ConversationSettings
    turns: list[TurnRecord] = field(default_factory=list)
    #: Turns dropped from `turns` to keep the carried state small; numbering never restarts.
    earlier_turns: int = 0
    turn_count: int = 0
    idempotency: dict[str, TurnResult] = field(default_factory=dict)
    outbox: list[PublishRequest] = field(default_factory=list)
    feedback_count: int = 0
    status: str = "active"
    last_activity: str = ""
    #: The verdict of the latest check: names the policy in force for events.
    policy: Verdict | None = None
    run_started_at_turn: int = 0
    #: The earlier messages the session was seeded with (oldest first), and how many older
    #: ones the client sent that did not fit the context (never seen by the SLM, not kept).
    seed: list[ChatMessage] = field(default_factory=list)
    seed_dropped: int = 0


@dataclass
class TranscriptRequest:
    #: At most this many turns, the latest first chosen; 0: none (the session's state only).
    limit: int = 100
    #: Only turns numbered below this one; 0: no bound.
    before_turn: int = 0


@dataclass
class ConversationView:
    session_id: str
    status: str
    turns: list[TurnRecord]
    training_mode: bool
    workflow_id: str
    run_id: str
    turn_count: int
    earlier_turns: int
    #: `before_turn` for the page before this one; None when this page reaches the oldest kept turn.
    next_before: int | None = None
    owner: str = ""
    #: Bytes of events waiting for the broker (a long outage): new turns wait past a bound.
    backlog_bytes: int = 0
    seed: list[ChatMessage] = field(default_factory=list)
    #: No seed and no answered turn yet: earlier messages sent now would seed the session.
    takes_seed: bool = False
    #: The turn running now; 0 when none is.
    running_turn: int = 0
