"""The turn a request asks for, and the session it runs in: shared by every route that
takes a turn (step, stream, the OpenAI-compatible chat completion).

`turn_request` makes the turn from the request: its message (and any earlier messages)
redacted, its fingerprint for Idempotency-Key. `start_operation` starts the session's
workflow if it is new (update-with-start). `run_turn` takes a turn whole, within the
tenant's limits; `answered` gives a finished turn's headers. `session_view` reads a
session (a page of it) for whoever may use it, for every route that names one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from api.auth import Principal
from api.limits import TenantLimits
from api.metrics import MODERATION_VERDICTS, TURN_DURATION
from api.schemas.conversations import StepRequest
from api.session_erasure import refuse_deleted
from api.temporal_errors import temporal_errors
from core.clients import Clients
from core.errors import NotFound
from core.messages import ChatMessage
from core.moderation import pii
from core.policy import Policy
from core.search_attributes import (
    CREATED_AT,
    LAST_TURN_AT,
    OWNER_HASH,
    SESSION_ID,
    TENANT,
    TITLE,
    owner_hash,
    title_of,
)
from core.settings import Settings
from core.telemetry import current_trace_id, current_traceparent, session_id_var
from core.workflow_ids import conversation_id
from workflows.conversation.context import seed_budget, seed_within
from workflows.conversation.history import digest
from workflows.conversation.types import (
    CancelRequest,
    ConversationSettings,
    ConversationState,
    ConversationView,
    Sampling,
    TranscriptRequest,
    TurnRecord,
    TurnRequest,
    TurnResult,
)
from workflows.conversation.workflow import ConversationWorkflow

#: Names the session of a first turn sent with an Idempotency-Key and no session id.
_KEYED_SESSIONS = uuid.UUID("0b6a4f0e-5d8e-4f4a-9f59-2f1f3c0d7a21")


def start_operation(
    settings: Settings, principal: Principal, session_id: str, turn: TurnRequest
) -> WithStartWorkflowOperation:  # type: ignore[type-arg]
    """Start the session's workflow, owned by `principal`, if it is not running
    (update-with-start); `turn` is its first (its title is that of the first user message)."""
    tenant = principal.tenant
    conversation = ConversationSettings(
        tenant=tenant,
        session_id=session_id,
        slm_task_queue=settings.slm_task_queue,
        events_topic=settings.conversation_events_topic,
        idle_timeout_seconds=settings.conversation_idle_timeout_seconds,
        context_token_budget=settings.context_token_budget,
        max_reply_tokens=settings.max_reply_tokens,
        turns_per_run=settings.conversation_turns_per_run,
        stream_retention_seconds=settings.stream_retention_seconds,
        max_turn_seconds=settings.max_turn_seconds,
        owner=principal.subject,
    )
    return WithStartWorkflowOperation(
        ConversationWorkflow.run,
        ConversationState(settings=conversation),
        id=conversation_id(tenant, session_id),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A closed session stays closed: its id is never started again.
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            _listed(principal, session_id, turn if settings.session_titles else None)
        ),
    )


def _listed(
    principal: Principal, session_id: str, turn: TurnRequest | None
) -> list[SearchAttributePair[Any]]:
    """What finds a new session in visibility: the tenant's, the owner's, by the title of
    its first turn (none without `turn`)."""
    first = ""
    if turn is not None:
        first = next((m.content for m in turn.seed if m.role == "user"), turn.message)
    now = datetime.now(UTC)
    return [
        SearchAttributePair(TENANT, principal.tenant),
        SearchAttributePair(SESSION_ID, session_id),
        SearchAttributePair(OWNER_HASH, owner_hash(principal.tenant, principal.subject)),
        SearchAttributePair(TITLE, title_of(first)),
        SearchAttributePair(CREATED_AT, now),
        SearchAttributePair(LAST_TURN_AT, now),
    ]


async def turn_request(
    body: StepRequest,
    principal: Principal,
    idempotency_key: str | None,
    policy: Policy,
    stream_id: str = "",
    options: TurnOptions | None = None,
) -> tuple[str, TurnRequest]:
    """The session id and the turn to send its workflow, its message (and its seed) with the
    personal data the policy redacts already replaced: nothing downstream (history,
    transcript, events, the SLM) ever holds it.

    A body without a session id starts a new session; with an Idempotency-Key, the key
    names it, so that a retry reaches the session (and the result) of the first attempt.
    `options` are the OpenAI-compatible route's; a repeated key must repeat them too."""
    session_id = body.session_id or (
        uuid.uuid5(_KEYED_SESSIONS, f"{principal.tenant}/{principal.subject}/{idempotency_key}").hex
        if idempotency_key
        else uuid.uuid4().hex
    )
    session_id_var.set(session_id)
    options = options or TurnOptions()
    # Up to 64 KiB of text to scan: on a worker thread, so the event loop (and every other
    # request, liveness included) never waits for it.
    message, earlier = await asyncio.to_thread(_redacted, policy, body.message, options.earlier)
    metadata = redacted_metadata(body.metadata, policy)
    history = [digest(m.role, m.content) for m in earlier]
    seed = []
    if options.seed_budget:
        seed = seed_within(earlier, seed_budget(message, options.seed_budget))
    request: dict[str, object] = {"message": message, "metadata": metadata}
    if options.sampling or history:  # the step route's fingerprints stay as they were
        request |= {"options": [asdict(options.sampling or Sampling()), history]}
    fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    return session_id, TurnRequest(
        message=message,
        metadata=metadata,
        idempotency_key=idempotency_key,
        trace_id=current_trace_id(),
        traceparent=current_traceparent(),
        stream_id=stream_id,
        actor=principal.subject,
        actor_is_admin=principal.is_admin,
        fingerprint=fingerprint[:32],
        sampling=options.sampling,
        history=history,
        seed=seed,
        on_busy=body.on_busy,
    )


@dataclass
class TurnOptions:
    """What an OpenAI-style request adds to a turn: its sampling, and the earlier messages
    the client holds (system messages aside), which the session checks against its own, or
    which seed it, the latest that fit `seed_budget` tokens beside the message (0: none)."""

    sampling: Sampling | None = None
    earlier: list[ChatMessage] = field(default_factory=list)
    seed_budget: int = 0


def _redacted(
    policy: Policy, message: str, earlier: list[ChatMessage]
) -> tuple[str, list[ChatMessage]]:
    """The message and the earlier messages with the personal data `policy` redacts replaced."""
    kinds = policy.document.pii.redact
    return pii.redact(message, kinds)[0], [
        ChatMessage(m.role, pii.redact(m.content, kinds)[0]) for m in earlier
    ]


def redacted_metadata(metadata: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """A turn's `metadata` (at most 4 KiB) with the personal data `policy` redacts replaced in
    every string of it, as in a message."""
    redacted = pii.redact_values(metadata, policy.document.pii.redact)
    assert isinstance(redacted, dict)
    return redacted


def redacted_comment(comment: str, policy: Policy) -> str:
    """A feedback comment (at most 2000 characters), redacted like a message."""
    return pii.redact(comment, policy.document.pii.redact)[0]


def _observe(result: TurnResult, started: float) -> None:
    TURN_DURATION.labels(stage="total").observe(time.perf_counter() - started)
    for stage, seconds in result.timings.items():
        TURN_DURATION.labels(stage=stage).observe(seconds)
    for check in result.checks:
        MODERATION_VERDICTS.labels(
            stage=check.checked_stage,
            category=check.category or "none",
            decision=check.decision,
            provider=check.provider or "none",
        ).inc()


async def run_turn(
    turn: TurnRequest,
    session_id: str,
    principal: Principal,
    clients: Clients,
    settings: Settings,
    limits: TenantLimits,
) -> TurnResult:
    """The turn, taken in its session (started if new) within the tenant's limits."""
    started = time.perf_counter()
    await refuse_deleted(clients, principal.tenant, session_id, starting=True)
    give_back = await limits.quotas.reserve(principal)
    try:
        release = await limits.turn(principal.tenant, session_id)
    except BaseException:
        await give_back()
        raise
    try:
        with temporal_errors(f"session {session_id}"):
            result: TurnResult = await clients.temporal.execute_update_with_start_workflow(
                ConversationWorkflow.step,
                turn,
                start_workflow_operation=start_operation(settings, principal, session_id, turn),
            )
    finally:
        await release()
        await give_back()
    _observe(result, started)
    return result


def answered(result: TurnResult, request: Request, response: Response) -> None:
    """The turn's decision for the request's metrics, and its headers."""
    request.state.decision = "refused" if result.status == "refused" else "allowed"
    response.headers["X-Policy-Verdict"] = result.verdict.decision
    # Where the turn's time went (W3C Server-Timing), e.g. "slm;dur=812.4": lets a client or
    # the benchmark tell the model's time from the orchestration's.
    response.headers["Server-Timing"] = ", ".join(
        f"{stage};dur={seconds * 1000:.1f}" for stage, seconds in result.timings.items()
    )


#: The session's state without any turn: enough to check it before a signal or an update.
STATE_ONLY = TranscriptRequest(limit=0)


async def session_view(
    clients: Clients, principal: Principal, session_id: str, page: TranscriptRequest
) -> ConversationView:
    """The session (a page of it), if `principal` may use it: its owner or a tenant admin.
    To anyone else it does not exist: the answer is a missing session's, word for word."""
    session_id_var.set(session_id)
    await refuse_deleted(clients, principal.tenant, session_id)
    handle = clients.temporal.get_workflow_handle(conversation_id(principal.tenant, session_id))
    with temporal_errors(f"session {session_id}"):
        view: ConversationView = await handle.query(ConversationWorkflow.transcript, page)
    if view.owner and view.owner != principal.subject and not principal.is_admin:
        raise NotFound(f"No session {session_id}.")
    return view


async def cancel_session_turn(
    clients: Clients, principal: Principal, session_id: str, turn: int
) -> TurnRecord:
    """Cancel the session's turn, if the session is theirs; the turn's record once it ended."""
    await session_view(clients, principal, session_id, STATE_ONLY)
    handle = clients.temporal.get_workflow_handle(conversation_id(principal.tenant, session_id))
    with temporal_errors(f"session {session_id}"):
        record: TurnRecord = await handle.execute_update(
            ConversationWorkflow.cancel,
            CancelRequest(turn, current_trace_id(), current_traceparent()),
        )
    return record
