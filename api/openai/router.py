"""The OpenAI-compatible routes: `POST /v1/chat/completions`, `GET /v1/models` (and one model).

A chat completion is one turn of a session, taken by the code of the step and stream routes
(api/session_workflow.py, api/streaming/start.py): the same token and roles, tenant limits,
Idempotency-Key, PII redaction, moderation, events and durability. What this module adds
is the dialect (api/openai/protocol.py, api/openai/responses.py, api/openai/chunks.py, and
OpenAI's error shape, api/openai/errors.py) and the session:

- it is named by the `X-Session-Id` header, else the body's `metadata.session_id`, else
  its `user`, which names a session of the caller's own (its id derived from the token's
  subject and the value, so that no other user of the tenant can take it first); with
  none, the call is a new session's first turn. `X-Session-Id` names the session on every
  answer.
- the last message (a user's) is the turn. The earlier ones (system messages aside) are
  the conversation the client holds: the session checks them against its own
  (workflows/conversation/history.py; 409 `history_mismatch`), or, in a session that has no
  seed and no answered turn yet, they seed its context, moderated and redacted like a
  message.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from api.auth import Principal
from api.deps import (
    ClientsDep,
    IdempotencyKey,
    LimitsDep,
    PolicyDep,
    SettingsDep,
    UserPrincipal,
)
from api.openai.chunks import ChunkWriter, chunk_frames
from api.openai.errors import CHAT_PATH, MODELS_PATH, openai_errors
from api.openai.protocol import ChatCompletionRequest, parse_request
from api.openai.responses import ChatCompletion, ModelCard, ModelList
from api.schemas.conversations import SESSION_ID_PATTERN, StepRequest
from api.session_workflow import (
    STATE_ONLY,
    TurnOptions,
    answered,
    run_turn,
    session_view,
    turn_request,
)
from api.streaming.start import relayed, start_stream
from core.clients import Clients
from core.errors import InvalidParameter, ModelNotFound, NotFound
from core.settings import Settings
from core.workflow_ids import conversation_id

router = APIRouter(tags=["openai"], responses=openai_errors(401, 403, 409, 429, 503))
SessionHeader = Annotated[
    str | None,
    Header(
        alias="X-Session-Id",
        description="the session (`^[A-Za-z0-9._-]{1,128}$`); absent: the body's "
        "`metadata.session_id`, else its `user`, else a new session",
    ),
]
OnBusyHeader = Annotated[
    Literal["enqueue", "reject", "interrupt"],
    Header(
        alias="X-On-Busy",
        description="if a turn of the session is running: wait for it (`enqueue`), answer "
        "409 `turn_in_progress` (`reject`), or cancel it first (`interrupt`)",
    ),
]
_SESSION_ID = re.compile(SESSION_ID_PATTERN)
_STREAM_DOC = (
    "With `stream: true`: server-sent events, each a `data:` line holding a "
    "`chat.completion.chunk` (no event names), then `data: [DONE]`. The first chunk's delta "
    "has `role: assistant`; the last chunk has `finish_reason`. `x_retract` on a chunk: drop "
    "the content received before it. A turn that fails after the stream started ends with "
    '`data: {"error": {...}}`. A `: ping` comment comes every 15 s of silence.'
)
_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}
    },
}
#: Sessions named by a request's `user`: uuid5 of tenant, subject and the value.
_USER_SESSIONS = uuid.UUID("5f0c2a7e-8f3b-4c1e-a0d4-6b2e9c7f1a38")


@router.post(
    CHAT_PATH,
    response_model=ChatCompletion,
    responses={
        200: {
            "description": "The turn as a `chat.completion`, or its stream. " + _STREAM_DOC,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **openai_errors(400, 404, 413, 504),
    },
    openapi_extra={"requestBody": _BODY},
)
async def chat_completions(
    request: Request,
    response: Response,
    principal: UserPrincipal,
    clients: ClientsDep,
    settings: SettingsDep,
    policy: PolicyDep,
    limits: LimitsDep,
    x_session_id: SessionHeader = None,
    idempotency_key: IdempotencyKey = None,
    x_on_busy: OnBusyHeader = "enqueue",
) -> Any:
    asked_at = time.perf_counter()
    body = parse_request(await request.body())
    _check_model(body.model, settings)
    message, earlier = body.turn()
    sampling = body.sampling(settings)
    named = _session_id(x_session_id, body, principal, settings)
    seeds = bool(earlier) and await _takes_seed(clients, principal, named)
    options = TurnOptions(sampling, earlier, settings.context_token_budget if seeds else 0)
    stream_id = uuid.uuid4().hex if body.stream else ""
    step = _step(named, message, body, x_on_busy)
    session_id, turn = await turn_request(
        step, principal, idempotency_key, policy, stream_id, options
    )
    if body.stream:
        source = await start_stream(
            turn, session_id, principal, clients, settings, limits, asked_at
        )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        writer = ChunkWriter(
            body.model, conversation_id(principal.tenant, session_id), include_usage
        )
        return StreamingResponse(
            chunk_frames(relayed(source, clients), writer),
            media_type="text/event-stream",
            headers={
                "X-Session-Id": session_id,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
    result = await run_turn(turn, session_id, principal, clients, settings, limits)
    answered(result, request, response)
    response.headers["X-Session-Id"] = session_id
    return ChatCompletion.of(result, body.model, int(time.time()))


@router.get(MODELS_PATH)
async def list_models(
    principal: UserPrincipal, settings: SettingsDep, request: Request
) -> ModelList:
    """The model this orchestrator serves: the one a chat completion names."""
    return ModelList(data=[_card(settings, request)])


@router.get(MODELS_PATH + "/{model:path}", responses=openai_errors(404))
async def get_model(
    model: str, principal: UserPrincipal, settings: SettingsDep, request: Request
) -> ModelCard:
    _check_model(model, settings)
    return _card(settings, request)


def _card(settings: Settings, request: Request) -> ModelCard:
    # `created`: when this API process started serving it.
    return ModelCard(id=settings.slm_model, created=request.app.state.started_at)


def _check_model(model: str, settings: Settings) -> None:
    if model != settings.slm_model:
        raise ModelNotFound(
            f"The model `{model}` does not exist; this server serves `{settings.slm_model}` "
            "(GET /v1/models).",
            param="model",
        )


def _session_id(
    header: str | None, body: ChatCompletionRequest, principal: Principal, settings: Settings
) -> str | None:
    """The session the request names: X-Session-Id, else metadata.session_id, else user (a
    session of the caller's own, unless ORCH_OPENAI_USER_SESSIONS=tenant)."""
    named = (
        (header, "X-Session-Id"),
        ((body.metadata or {}).get("session_id"), "metadata.session_id"),
        (body.user, "user"),
    )
    for value, param in named:
        if not value:
            continue
        if not _SESSION_ID.fullmatch(value):
            raise InvalidParameter(
                f"{param} names the session: it must match {SESSION_ID_PATTERN}.", param
            )
        if param == "user" and settings.openai_user_sessions == "subject":
            return uuid.uuid5(_USER_SESSIONS, f"{principal.tenant}/{principal.subject}/{value}").hex
        return value
    return None


async def _takes_seed(clients: Clients, principal: Principal, session_id: str | None) -> bool:
    """Would the earlier messages seed the session (a new one, or one with no seed and no
    answered turn)? A session of another user does not exist for the caller (404)."""
    if session_id is None:
        return True
    try:
        view = await session_view(clients, principal, session_id, STATE_ONLY)
    except NotFound:
        return True
    return view.takes_seed


def _step(
    session_id: str | None, message: str, body: ChatCompletionRequest, on_busy: str
) -> StepRequest:
    try:
        return StepRequest.model_validate(
            {
                "session_id": session_id,
                "message": message,
                "metadata": body.metadata or {},
                "on_busy": on_busy,
            }
        )
    except ValidationError as error:  # the metadata, the one part not checked before
        raise InvalidParameter(error.errors()[0]["msg"], "metadata") from None
