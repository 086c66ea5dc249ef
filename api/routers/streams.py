"""Streamed turns over SSE (docs/interface.md, section 4): start one, or follow and resume one.

The turn is the same update as a step, with a stream id (api/streaming/start.py, shared with the
WebSocket): its workflow and SLM activity write the turn's events to a Redis Stream, which
these routes relay. A client that disconnects stops nothing; it comes back on the turn's
stream route with `Last-Event-ID`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import (
    ClientsDep,
    IdempotencyKey,
    LimitsDep,
    PolicyDep,
    SessionId,
    SettingsDep,
    UserPrincipal,
)
from api.openapi import V1_PROBLEMS, problems
from api.schemas.conversations import StepRequest
from api.streaming.start import Source, find_stream, relayed, start_streamed_turn

router = APIRouter(tags=["streaming"], responses=V1_PROBLEMS)


async def _start_streamed_turn(
    body: StepRequest,
    principal: UserPrincipal,
    clients: ClientsDep,
    settings: SettingsDep,
    policy: PolicyDep,
    limits: LimitsDep,
    idempotency_key: IdempotencyKey = None,
) -> Source:
    """Start the turn before the response starts: a refusal is a plain problem."""
    return await start_streamed_turn(
        body, principal, clients, settings, policy, limits, idempotency_key
    )


async def _find_stream(
    session_id: SessionId,
    turn: Annotated[int, Path(ge=1)],
    principal: UserPrincipal,
    clients: ClientsDep,
    limits: LimitsDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Source:
    return await find_stream(session_id, turn, principal, clients, limits, last_event_id)


@router.post(
    "/v1/conversation/stream", response_class=EventSourceResponse, responses=problems(400, 413, 422)
)
@router.post(
    "/v1/chat/stream", response_class=EventSourceResponse, responses=problems(400, 413, 422)
)
async def stream_turn(
    source: Annotated[Source, Depends(_start_streamed_turn)], clients: ClientsDep
) -> AsyncIterator[ServerSentEvent]:
    # A relay that breaks off ends the stream without a final event; the client resumes on
    # the turn's stream route with Last-Event-ID.
    async for event in relayed(source, clients):
        yield event


@router.get(
    "/v1/conversation/{session_id}/turns/{turn}/stream",
    response_class=EventSourceResponse,
    responses=problems(404, 422),
)
async def follow_turn(
    source: Annotated[Source, Depends(_find_stream)], clients: ClientsDep
) -> AsyncIterator[ServerSentEvent]:
    async for event in relayed(source, clients):
        yield event
