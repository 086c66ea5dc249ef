"""Streamed turns, for every route that sends them (SSE, WebSocket): start one, find one to
follow or resume, and relay its events from its Redis Stream.

The turn is the same update as a step, with a stream id: its workflow and SLM activity write
the turn's events to a Redis Stream, which `relayed` reads at the client's pace. A client
that disconnects stops nothing; it resumes the turn after the last event id it saw.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from fastapi.sse import ServerSentEvent
from redis.exceptions import RedisError
from temporalio.client import WorkflowUpdateStage

from api.auth import Principal
from api.limits import Release, TenantLimits
from api.metrics import SLM_TIME_TO_FIRST_TOKEN
from api.schemas.conversations import StepRequest
from api.session_erasure import refuse_deleted
from api.session_workflow import session_view, start_operation, turn_request
from api.streaming.relay import relay, resume_point
from api.temporal_errors import temporal_errors
from core.clients import Clients
from core.errors import NotFound
from core.policy import Policy
from core.redis_keys import pointer_key, stream_key
from core.settings import Settings
from core.workflow_ids import conversation_id
from workflows.conversation import stream_events
from workflows.conversation.stream_events import record_body
from workflows.conversation.types import (
    ConversationView,
    TranscriptRequest,
    TurnRecord,
    TurnRequest,
)
from workflows.conversation.workflow import ConversationWorkflow

log = logging.getLogger("orchestrator.api")
#: A stream with no new event for this long is given up (the turn itself goes on).
IDLE_TIMEOUT_SECONDS = 300.0


@dataclass
class Source:
    """What a stream sends: a Redis Stream from a point, or a turn's final event alone."""

    key: str = ""
    after: str = "0-0"
    final: list[ServerSentEvent] = field(default_factory=list)
    #: A new turn: when its request arrived (perf_counter), for the time to its first token.
    asked_at: float | None = None
    #: The tenant's limits this stream holds (a stream, a turn), given back when it ends.
    releases: list[Release] = field(default_factory=list)
    #: Set when the relay broke off before the final event (Redis away, or too long idle).
    broken_off: bool = False

    async def release(self) -> None:
        for release in self.releases:
            await release()
        self.releases.clear()


async def start_streamed_turn(
    body: StepRequest,
    principal: Principal,
    clients: Clients,
    settings: Settings,
    policy: Policy,
    limits: TenantLimits,
    idempotency_key: str | None = None,
) -> Source:
    """Start the turn and return once its workflow accepted it; a refusal raises its problem."""
    asked_at = time.perf_counter()
    stream_id = uuid.uuid4().hex
    session_id, turn = await turn_request(body, principal, idempotency_key, policy, stream_id)
    return await start_stream(turn, session_id, principal, clients, settings, limits, asked_at)


async def start_stream(
    turn: TurnRequest,
    session_id: str,
    principal: Principal,
    clients: Clients,
    settings: Settings,
    limits: TenantLimits,
    asked_at: float,
) -> Source:
    """Start the streamed turn (its `stream_id` set) within the tenant's limits, and return
    its stream once the workflow accepted it (`asked_at`: when the request came)."""
    stream_id = turn.stream_id
    key = stream_key(conversation_id(principal.tenant, session_id), stream_id)
    source = Source(key=key, asked_at=asked_at)
    await refuse_deleted(clients, principal.tenant, session_id, starting=True)
    try:
        source.releases.append(await limits.quotas.reserve(principal))
        source.releases.append(await limits.stream(principal.tenant))
        source.releases.append(await limits.turn(principal.tenant, session_id))
        with temporal_errors(f"session {session_id}"):
            update = await clients.temporal.start_update_with_start_workflow(
                ConversationWorkflow.step,
                turn,
                start_workflow_operation=start_operation(settings, principal, session_id, turn),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                id=stream_id,
            )
            # A turn the workflow refused (closed session, another user's, a reused key) is
            # known by now: the SDK keeps that outcome on the handle without raising it, and
            # result() raises it at once. An accepted turn's outcome is not known yet.
            if update._known_outcome is not None:
                await update.result()
    except BaseException:
        await source.release()
        raise
    return source


async def find_stream(
    session_id: str,
    turn: int,
    principal: Principal,
    clients: Clients,
    limits: TenantLimits,
    last_event_id: str | None = None,
) -> Source:
    """A turn's events after `last_event_id` (all of them without it), if it is theirs."""
    after = resume_point(last_event_id, turn)
    # The session, if it is theirs to follow, with the turn's record if it ended.
    page = TranscriptRequest(limit=1, before_turn=turn + 1)
    view = await session_view(clients, principal, session_id, page)
    key = await clients.redis.get(pointer_key(conversation_id(principal.tenant, session_id), turn))
    if key is not None:
        source = Source(key=key.decode() if isinstance(key, bytes) else key, after=after)
        source.releases.append(await limits.stream(principal.tenant))
        return source
    # No stream (it expired, or the turn was not streamed): the turn's end alone, if it ended.
    record = view.turns[-1] if view.turns and view.turns[-1].turn == turn else None
    if record is None:
        raise NotFound(f"Session {session_id} has no ended turn {turn} to stream.")
    final = _final_event(record, view)
    return Source(final=[] if final.id == after else [final])


async def relayed(source: Source, clients: Clients) -> AsyncGenerator[ServerSentEvent, None]:
    """The source's events, in order, giving its limits back when it ends (or is closed).

    If the relay itself breaks off (Redis away, or no event for `IDLE_TIMEOUT_SECONDS`), the
    events end without a final one and `source.broken_off` is set: the turn goes on, and the
    client resumes after the last id it saw."""
    try:
        for event in source.final:
            yield event
        if not source.key:
            return
        try:
            async for event in relay(
                clients.followers, source.key, source.after, IDLE_TIMEOUT_SECONDS
            ):
                if event.event == "token" and source.asked_at is not None:
                    SLM_TIME_TO_FIRST_TOKEN.observe(time.perf_counter() - source.asked_at)
                    source.asked_at = None
                yield event
        except (RedisError, TimeoutError) as error:
            # Not the turn's failure (that is an `error` event of its own stream): the relay's.
            log.warning("stream relay of %s stopped: %s", source.key, error)
            source.broken_off = True
    finally:
        await source.release()


def _final_event(record: TurnRecord, view: ConversationView) -> ServerSentEvent:
    event_id = record.stream_final_id or f"{record.turn}-0"
    if record.status == "failed":
        # Records from before failures were kept with the turn all had the SLM's.
        problem = record.problem or stream_events.slm_failed(record.trace_id).data
        return ServerSentEvent(event="error", id=event_id, data=problem)
    body = record_body(record, view.session_id, view.workflow_id, view.run_id)
    return ServerSentEvent(event=f"turn.{record.status}", id=event_id, data=body)
