"""POST /v1/moderations: texts checked against the tenant's policy, in the shape of OpenAI's
moderation API, so that `client.moderations.create(...)` of OpenAI's SDKs reads the answer.

The check is a turn's input check (the same engine, on the workers: ModerationWorkflow) on
each text alone; no conversation is started and no event is written. Each result carries
OpenAI's thirteen categories, ours beside them, and the verdict that decided.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from temporalio.client import WorkflowFailureError

from api.deps import ClientsDep, SettingsDep, TenantPoliciesDep, UserPrincipal
from api.openai.errors import MODERATIONS_PATH, openai_errors
from api.openai.protocol import MAX_MESSAGE_CHARS, parse_body
from api.temporal_errors import temporal_errors
from core.errors import Forbidden, InvalidParameter
from core.moderation.verdict import Scan, ScanRequest, public_verdict
from core.tenant_policy import candidate_record
from core.workflow_ids import moderation_id
from workflows.moderation.workflow import ModerationWorkflow

router = APIRouter(tags=["openai"], responses=openai_errors(401, 403, 409, 429, 503))
#: The most texts one request checks.
MAX_INPUTS = 32
#: OpenAI's categories, each with the policy's categories that count as it.
OPENAI_CATEGORIES: dict[str, tuple[str, ...]] = {
    "harassment": (),
    "harassment/threatening": (),
    "hate": ("hate",),
    "hate/threatening": (),
    "illicit": ("illicit_drugs", "cybercrime", "weapons"),
    "illicit/violent": ("weapons",),
    "self-harm": ("self_harm",),
    "self-harm/intent": (),
    "self-harm/instructions": (),
    "sexual": ("sexual_minors",),
    "sexual/minors": ("sexual_minors",),
    "violence": ("violence",),
    "violence/graphic": (),
}


class ModerationRequest(BaseModel):
    model_config = {"extra": "forbid"}
    input: str | list[str] = Field(
        description=f"one text, or a list of 1 to {MAX_INPUTS}; each 1 to "
        f"{MAX_MESSAGE_CHARS} characters"
    )

    def texts(self) -> list[str]:
        """The texts, or a 400 naming the first that cannot be checked."""
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not 1 <= len(texts) <= MAX_INPUTS:
            raise InvalidParameter(
                f"`input` holds {len(texts)} texts; send 1 to {MAX_INPUTS}.", "input"
            )
        for index, text in enumerate(texts):
            if not 1 <= len(text) <= MAX_MESSAGE_CHARS:
                raise InvalidParameter(
                    f"input[{index}] is {len(text)} characters long; each text is 1 to "
                    f"{MAX_MESSAGE_CHARS}.",
                    "input" if isinstance(self.input, str) else f"input[{index}]",
                )
        return texts

    model: str | None = Field(default=None, description="accepted, and answered back")
    policy: dict[str, Any] | None = Field(
        default=None,
        description="admins: a candidate tenant policy (what PUT /v1/policy takes) to check "
        "with instead of the stored one, without storing it",
    )


class ModerationResult(BaseModel):
    flagged: bool = Field(description="the policy refuses the text as a turn's input")
    categories: dict[str, bool] = Field(
        description="OpenAI's categories, then the policy's own (`self_harm`, ...): true for "
        "the category that refused"
    )
    category_scores: dict[str, float] = Field(description="the same keys, 0 to 1")
    category_applied_input_types: dict[str, list[str]]
    verdict: dict[str, Any] = Field(
        description="the verdict, as a turn's: decision, stage, category, policy_version, "
        "constitution_hash, provider, score, basis"
    )


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]


@router.post(
    MODERATIONS_PATH,
    response_model=ModerationResponse,
    responses=openai_errors(400, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ModerationRequest"}}
            },
        }
    },
)
async def moderations(
    request: Request,
    principal: UserPrincipal,
    clients: ClientsDep,
    settings: SettingsDep,
    policies: TenantPoliciesDep,
) -> ModerationResponse:
    body = parse_body(await request.body(), ModerationRequest)
    texts = body.texts()
    if body.policy is not None:
        if not principal.is_admin:
            raise Forbidden("Only a tenant admin may check with a candidate `policy`.")
        try:
            candidate_record(policies.floor, body.policy)
        except ValueError as error:
            raise InvalidParameter(
                f"The candidate policy cannot be used: {error}", "policy"
            ) from None
    ident = uuid.uuid4().hex
    with temporal_errors("moderation"):
        try:
            scans = await clients.temporal.execute_workflow(
                ModerationWorkflow.run,
                ScanRequest(texts, principal.tenant, body.policy),
                id=moderation_id(principal.tenant, ident),
                task_queue=settings.task_queue,
            )
        except WorkflowFailureError as failed:  # a candidate the engine cannot take
            raise InvalidParameter(str(failed.cause), "policy") from None
    return ModerationResponse(
        id=f"modr-{ident}",
        model=body.model or "orchestrator-moderation",
        results=[_result(scan) for scan in scans],
    )


def _result(scan: Scan) -> ModerationResult:
    refused = scan.verdict.category if scan.verdict.decision == "refuse" else None
    flags = {name: name == refused for name in scan.scores}
    categories = {
        name: any(flags.get(ours, False) for ours in mapped)
        for name, mapped in OPENAI_CATEGORIES.items()
    }
    scores = {
        name: max((scan.scores.get(ours, 0.0) for ours in mapped), default=0.0)
        for name, mapped in OPENAI_CATEGORIES.items()
    }
    return ModerationResult(
        flagged=scan.verdict.decision == "refuse",
        categories={**categories, **flags},
        category_scores={**scores, **scan.scores},
        category_applied_input_types={name: ["text"] for name in {**categories, **flags}},
        verdict=public_verdict(scan.verdict),
    )
