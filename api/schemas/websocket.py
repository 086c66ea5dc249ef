"""The messages of the conversation WebSocket (docs/api.md, WebSocket), both ways.

Client to server: `turn`, `cancel`, `resume`, each a JSON text message, each with an optional
`ref` of the client's that an `error` it causes carries back. Server to client: a turn's
events, exactly as the SSE routes send them (`{"type", "id", "data"}`), and errors in
problem+json shape (`{"type": "error", "problem", "ref"?}`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi.sse import ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from api.problems import validation_details
from api.schemas.conversations import SESSION_ID_PATTERN, StepRequest
from core.errors import BadRequest, InvalidRequest, OrchestratorError

#: Anything the client wants an error to carry back (a string or a number).
Ref = str | int | None


class TurnMessage(StepRequest):
    """Start a turn: the body of `POST /v1/conversation/stream`, its header as a field."""

    type: Literal["turn"]
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)
    ref: Ref = None


class _OfATurn(BaseModel):
    """A message about one turn of a session."""

    model_config = ConfigDict(extra="forbid")
    session_id: str = Field(pattern=SESSION_ID_PATTERN)
    turn: int = Field(ge=1)
    ref: Ref = None


class CancelMessage(_OfATurn):
    """Cancel a turn: `POST /v1/conversation/{session_id}/turns/{turn}/cancel`."""

    type: Literal["cancel"]


class ResumeMessage(_OfATurn):
    """Follow a turn after an event: `GET .../turns/{turn}/stream` with `Last-Event-ID`."""

    type: Literal["resume"]
    #: `<turn>-<seq>`, checked against the turn as the SSE route checks `Last-Event-ID`.
    last_event_id: str | None = Field(default=None, max_length=64)


ClientMessage = TurnMessage | CancelMessage | ResumeMessage
_MESSAGES: TypeAdapter[ClientMessage] = TypeAdapter(
    Annotated[ClientMessage, Field(discriminator="type")]
)


class MessageError(Exception):
    """A client message refused before anything started; `ref` is the message's, if any."""

    def __init__(self, error: OrchestratorError, ref: str | int | None) -> None:
        super().__init__(error.detail)
        self.error, self.ref = error, ref


def parse(text: str | None) -> ClientMessage:
    """The client's message, or `MessageError` saying what is wrong with it."""
    if text is None:
        raise MessageError(BadRequest("Send JSON text messages, not binary ones."), None)
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise MessageError(BadRequest(f"The message is not JSON: {error}."), None) from None
    ref = raw.get("ref") if isinstance(raw, dict) else None
    ref = ref if isinstance(ref, str | int) and not isinstance(ref, bool) else None
    try:
        return _MESSAGES.validate_python(raw)
    except ValidationError as error:
        detail, errors = validation_details(error.errors())
        if not errors or not errors[0]["loc"]:  # not one of the messages at all
            detail += "; send an object whose type is turn, cancel or resume"
        raise MessageError(InvalidRequest(detail + ".", errors=errors), ref) from None


def event_text(event: ServerSentEvent) -> str:
    """A turn's event as a message: its data as the relay read it, never parsed again."""
    data = event.raw_data if event.raw_data is not None else json.dumps(event.data)
    return f'{{"type":{json.dumps(event.event)},"id":{json.dumps(event.id)},"data":{data}}}'


def error_text(problem: dict[str, Any], ref: str | int | None) -> str:
    message: dict[str, Any] = {"type": "error", "problem": problem}
    if ref is not None:
        message["ref"] = ref
    return json.dumps(message)
