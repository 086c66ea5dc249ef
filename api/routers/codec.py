"""The codec endpoint of the Temporal UI and CLI (`--codec-endpoint <api>/v1/codec`): encodes
and decodes payloads with the process's keys, so operators can read encrypted histories.
The platform's operators only (ORCH_CODEC_ROLE, `operator`), never a tenant's admin: what
it decodes is every tenant's conversations.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from api.deps import CodecPrincipal
from api.openapi import V1_PROBLEMS, problems
from core.codec import CodecKeyError
from core.errors import InvalidRequest, NotFound

router = APIRouter(prefix="/v1/codec", tags=["codec"], responses=V1_PROBLEMS)


class Payloads(BaseModel):
    """Temporal's JSON form of payloads: `metadata` values and `data` in base64."""

    model_config = ConfigDict(extra="forbid")
    payloads: list[dict[str, Any]]


@router.post("/encode", responses=problems(400, 404, 413, 422))
async def encode(body: Payloads, principal: CodecPrincipal, request: Request) -> Payloads:
    codec = _codec(request)
    return _as_json(await codec.encode(_parsed(body)))


@router.post("/decode", responses=problems(400, 404, 413, 422))
async def decode(body: Payloads, principal: CodecPrincipal, request: Request) -> Payloads:
    codec = _codec(request)
    try:
        return _as_json(await codec.decode(_parsed(body)))
    except CodecKeyError as error:
        raise InvalidRequest(str(error)) from None


def _codec(request: Request) -> PayloadCodec:
    codec: PayloadCodec | None = request.app.state.codec
    if codec is None:
        raise NotFound("Payload encryption is off (ORCH_PAYLOAD_ENCRYPTION=false): no codec.")
    return codec


def _parsed(body: Payloads) -> list[Payload]:
    try:
        return [json_format.ParseDict(item, Payload()) for item in body.payloads]
    except json_format.ParseError as error:
        raise InvalidRequest(f"payloads: not Temporal payloads ({error})") from None


def _as_json(payloads: list[Payload]) -> Payloads:
    return Payloads(payloads=[json_format.MessageToDict(p) for p in payloads])
