"""Conversation routes: a turn is an update (with start) on the session's workflow."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from api.auth import Principal
from api.deps import ClientsDep, LimitsDep, PolicyDep, SettingsDep, UserPrincipal
from api.metrics import MODERATION_VERDICTS, TURN_DURATION
from api.openapi import V1_PROBLEMS, problems
from api.schemas import (
    SESSION_ID_PATTERN,
    ConversationOut,
    FeedbackRequest,
    StepRequest,
    StepResponse,
    TurnOut,
)
from api.temporal_errors import temporal_errors
from core.errors import EventsBacklog, Forbidden, InvalidRequest, SessionClosed
from core.moderation import pii
from core.policy import Policy
from core.settings import Settings
from core.telemetry import current_trace_id, current_traceparent, session_id_var
from workflows.conversation import ConversationWorkflow
from workflows.search_attributes import SESSION_ID, TENANT
from workflows.session_record import BACKLOG_ADMIT_BYTES
from workflows.turns import (
    CancelRequest,
    CloseRequest,
    ConversationSettings,
    ConversationState,
    ConversationView,
    Feedback,
    TranscriptRequest,
    TurnRecord,
    TurnRequest,
    TurnResult,
)

router = APIRouter(prefix="/v1/conversation", tags=["conversations"], responses=V1_PROBLEMS)
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)]
SessionId = Annotated[str, Path(pattern=SESSION_ID_PATTERN)]
#: Names the session of a first turn sent with an Idempotency-Key and no session id.
_KEYED_SESSIONS = uuid.UUID("0b6a4f0e-5d8e-4f4a-9f59-2f1f3c0d7a21")


def workflow_id(tenant: str, session_id: str) -> str:
    return f"conversation:{tenant}:{session_id}"


def start_operation(
    settings: Settings, principal: Principal, session_id: str
) -> WithStartWorkflowOperation:  # type: ignore[type-arg]
    """Start the session's workflow, owned by `principal`, if it is not running
    (update-with-start)."""
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
        id=workflow_id(tenant, session_id),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A closed session stays closed: its id is never started again.
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(TENANT, tenant), SearchAttributePair(SESSION_ID, session_id)]
        ),
    )


def turn_request(
    body: StepRequest,
    principal: Principal,
    idempotency_key: str | None,
    policy: Policy,
    stream_id: str = "",
) -> tuple[str, TurnRequest]:
    """The session id and the turn to send its workflow, its message with the personal data
    the policy redacts already replaced: nothing downstream (history, transcript, events,
    the SLM) ever holds it.

    A body without a session id starts a new session; with an Idempotency-Key, the key
    names it, so that a retry reaches the session (and the result) of the first attempt."""
    session_id = body.session_id or (
        uuid.uuid5(_KEYED_SESSIONS, f"{principal.tenant}/{principal.subject}/{idempotency_key}").hex
        if idempotency_key
        else uuid.uuid4().hex
    )
    session_id_var.set(session_id)
    message, _ = pii.redact(body.message, policy.document.pii.redact)
    request = {"message": message, "metadata": body.metadata}
    fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    return session_id, TurnRequest(
        message=message,
        metadata=body.metadata,
        idempotency_key=idempotency_key,
        trace_id=current_trace_id(),
        traceparent=current_traceparent(),
        stream_id=stream_id,
        actor=principal.subject,
        actor_is_admin=principal.is_admin,
        fingerprint=fingerprint[:32],
    )


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


@router.post("/step", responses=problems(400, 413, 422, 504))
async def step(
    body: StepRequest,
    principal: UserPrincipal,
    clients: ClientsDep,
    settings: SettingsDep,
    policy: PolicyDep,
    request: Request,
    response: Response,
    limits: LimitsDep,
    idempotency_key: IdempotencyKey = None,
) -> StepResponse:
    session_id, turn = turn_request(body, principal, idempotency_key, policy)
    started = time.perf_counter()
    release = await limits.turn(principal.tenant, session_id)
    try:
        with temporal_errors(f"session {session_id}"):
            result: TurnResult = await clients.temporal.execute_update_with_start_workflow(
                ConversationWorkflow.step,
                turn,
                start_workflow_operation=start_operation(settings, principal, session_id),
            )
    finally:
        await release()
    _observe(result, started)
    request.state.decision = "refused" if result.status == "refused" else "allowed"
    response.headers["X-Policy-Verdict"] = result.verdict.decision
    # Where the turn's time went (W3C Server-Timing), e.g. "slm;dur=812.4": lets a client or
    # the benchmark tell the model's time from the orchestration's.
    response.headers["Server-Timing"] = ", ".join(
        f"{stage};dur={seconds * 1000:.1f}" for stage, seconds in result.timings.items()
    )
    return StepResponse.of(result)


#: The session's state without any turn: enough to check it before a signal or an update.
STATE_ONLY = TranscriptRequest(limit=0)


async def session_view(
    clients: ClientsDep, principal: Principal, session_id: str, page: TranscriptRequest
) -> ConversationView:
    """The session (a page of it), if `principal` may use it: its owner or a tenant admin."""
    session_id_var.set(session_id)
    handle = clients.temporal.get_workflow_handle(workflow_id(principal.tenant, session_id))
    with temporal_errors(f"session {session_id}"):
        view: ConversationView = await handle.query(ConversationWorkflow.transcript, page)
    if view.owner and view.owner != principal.subject and not principal.is_admin:
        raise Forbidden(
            f"Session {session_id} belongs to another user of the tenant; only they and the "
            "tenant's admins can use it."
        )
    return view


@router.get("/{session_id}", responses=problems(404, 422))
async def get_conversation(
    session_id: SessionId,
    principal: UserPrincipal,
    clients: ClientsDep,
    limit: Annotated[int, Query(ge=1, le=200, description="at most this many turns")] = 100,
    before: Annotated[
        int | None, Query(ge=2, description="only turns numbered below this one")
    ] = None,
) -> ConversationOut:
    page = TranscriptRequest(limit=limit, before_turn=before or 0)
    return ConversationOut.of(await session_view(clients, principal, session_id, page))


@router.post(
    "/{session_id}/feedback",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(400, 404, 413, 422),
)
async def feedback(
    session_id: SessionId, body: FeedbackRequest, principal: UserPrincipal, clients: ClientsDep
) -> dict[str, object]:
    view = await session_view(clients, principal, session_id, STATE_ONLY)
    if view.status == "closed":
        raise SessionClosed(f"Session {session_id} is closed; feedback is no longer taken.")
    if view.backlog_bytes > BACKLOG_ADMIT_BYTES:
        raise EventsBacklog(
            f"Session {session_id}'s events are waiting for the event broker; feedback is "
            "taken again once they are published. Retry later."
        )
    if body.turn > view.turn_count:
        raise InvalidRequest(
            f"Session {session_id} has no turn {body.turn} (it has {view.turn_count})."
        )
    handle = clients.temporal.get_workflow_handle(workflow_id(principal.tenant, session_id))
    with temporal_errors(f"session {session_id}"):
        await handle.signal(
            ConversationWorkflow.feedback,
            Feedback(
                body.turn,
                body.rating,
                body.comment,
                current_trace_id(),
                current_traceparent(),
                actor=principal.subject,
            ),
        )
    return {"session_id": session_id, "turn": body.turn, "accepted": True}


@router.post("/{session_id}/turns/{turn}/cancel", responses=problems(404, 422))
async def cancel_turn(
    session_id: SessionId,
    turn: Annotated[int, Path(ge=1)],
    principal: UserPrincipal,
    clients: ClientsDep,
) -> TurnOut:
    """Stop a running turn and its SLM call; answers once it ended `cancelled`."""
    return TurnOut.of(await cancel(clients, principal, session_id, turn))


async def cancel(
    clients: ClientsDep, principal: Principal, session_id: str, turn: int
) -> TurnRecord:
    """Cancel the session's turn, if the session is theirs; the turn's record once it ended."""
    await session_view(clients, principal, session_id, STATE_ONLY)
    handle = clients.temporal.get_workflow_handle(workflow_id(principal.tenant, session_id))
    with temporal_errors(f"session {session_id}"):
        record: TurnRecord = await handle.execute_update(
            ConversationWorkflow.cancel,
            CancelRequest(turn, current_trace_id(), current_traceparent()),
        )
    return record


@router.post("/{session_id}/close", responses=problems(404, 422))
async def close(
    session_id: SessionId, principal: UserPrincipal, clients: ClientsDep
) -> ConversationOut:
    state = await session_view(clients, principal, session_id, STATE_ONLY)
    if state.status == "closed":  # closing is idempotent: the same answer again
        return ConversationOut.of(
            await session_view(clients, principal, session_id, TranscriptRequest())
        )
    handle = clients.temporal.get_workflow_handle(workflow_id(principal.tenant, session_id))
    with temporal_errors(f"session {session_id}"):
        view: ConversationView = await handle.execute_update(
            ConversationWorkflow.close,
            CloseRequest(
                trace_id=current_trace_id(),
                traceparent=current_traceparent(),
                actor=principal.subject,
            ),
        )
    return ConversationOut.of(view)
