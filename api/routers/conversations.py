"""Conversation routes: a turn is an update (with start) on the session's workflow."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from api.deps import (
    ActivePolicyDep,
    ClientsDep,
    IdempotencyKey,
    LimitsDep,
    PolicyDep,
    SessionId,
    SettingsDep,
    UserPrincipal,
)
from api.openapi import V1_PROBLEMS, problems
from api.schemas.conversations import (
    ConversationOut,
    FeedbackRequest,
    StepRequest,
    StepResponse,
    TurnOut,
)
from api.session_erasure import start_erasure
from api.session_workflow import (
    STATE_ONLY,
    answered,
    cancel_session_turn,
    redacted_comment,
    run_turn,
    session_view,
    turn_request,
)
from api.temporal_errors import temporal_errors
from core.errors import DependencyUnavailable, EventsBacklog, InvalidRequest, SessionClosed
from core.telemetry import current_trace_id, current_traceparent
from core.workflow_ids import conversation_id
from workflows.conversation.session_record import BACKLOG_ADMIT_BYTES
from workflows.conversation.types import (
    CloseRequest,
    ConversationView,
    Feedback,
    TranscriptRequest,
)
from workflows.conversation.workflow import ConversationWorkflow

#: How long DELETE waits for the deletion before it says it goes on by itself.
DELETE_WAIT_SECONDS = 60
router = APIRouter(prefix="/v1/conversation", tags=["conversations"], responses=V1_PROBLEMS)


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
    session_id, turn = await turn_request(body, principal, idempotency_key, policy)
    result = await run_turn(turn, session_id, principal, clients, settings, limits)
    answered(result, request, response)
    return StepResponse.of(result)


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


@router.delete(
    "/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404, 422)
)
async def delete_session(
    session_id: SessionId,
    principal: UserPrincipal,
    clients: ClientsDep,
    policy: ActivePolicyDep,
) -> Response:
    """Delete the session from everywhere the product keeps it (its owner, or an admin of
    the tenant); answers once it is gone. Its id is never used again."""
    await session_view(clients, principal, session_id, STATE_ONLY)
    job = await start_erasure(
        clients, principal, policy, f"session:{session_id}", session_ids=[session_id]
    )
    try:
        async with asyncio.timeout(DELETE_WAIT_SECONDS):
            with temporal_errors(f"session {session_id}"):
                await job.result()
    except TimeoutError:
        raise DependencyUnavailable(
            f"The deletion of session {session_id} is under way and completes by itself (a "
            "dependency is slow or away); DELETE again later: 404 once it is done."
        ) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{session_id}/feedback",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(400, 404, 413, 422),
)
async def feedback(
    session_id: SessionId,
    body: FeedbackRequest,
    principal: UserPrincipal,
    clients: ClientsDep,
    policy: PolicyDep,
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
    handle = clients.temporal.get_workflow_handle(conversation_id(principal.tenant, session_id))
    with temporal_errors(f"session {session_id}"):
        await handle.execute_update(
            ConversationWorkflow.give_feedback,
            Feedback(
                body.turn,
                body.rating,
                redacted_comment(body.comment, policy),
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
    return TurnOut.of(await cancel_session_turn(clients, principal, session_id, turn))


@router.post("/{session_id}/close", responses=problems(404, 422))
async def close(
    session_id: SessionId, principal: UserPrincipal, clients: ClientsDep
) -> ConversationOut:
    state = await session_view(clients, principal, session_id, STATE_ONLY)
    if state.status == "closed":  # closing is idempotent: the same answer again
        return ConversationOut.of(
            await session_view(clients, principal, session_id, TranscriptRequest())
        )
    handle = clients.temporal.get_workflow_handle(conversation_id(principal.tenant, session_id))
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
