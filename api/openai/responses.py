"""The answers of the OpenAI-compatible routes: a turn as a `chat.completion`, the model list.

A refused turn is a normal completion whose content is the policy's refusal message and
whose `finish_reason` is `content_filter` (the `X-Policy-Verdict` header says `refuse`).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel

from workflows.conversation.types import TurnResult

#: Names a completion: the same turn (a repeated Idempotency-Key) has the same id.
_COMPLETIONS = uuid.UUID("6f1c0f4e-8a53-4c55-9d0e-3c1b2e7a9d44")
FinishReason = Literal["stop", "length", "content_filter"]


def completion_id(workflow_id: str, turn: int) -> str:
    return f"chatcmpl-{uuid.uuid5(_COMPLETIONS, f'{workflow_id}/{turn}').hex}"


def finish_reason(status: str, slm_reason: str = "") -> FinishReason:
    """`content_filter` for a refusal; else why the SLM stopped (`length` at max_tokens)."""
    if status == "refused":
        return "content_filter"
    return "length" if slm_reason == "length" else "stop"


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, usage: dict[str, Any]) -> CompletionUsage:
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
        return cls(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: str | None = None

    @classmethod
    def of(cls, result: TurnResult, model: str, created: int) -> ChatCompletion:
        reason = finish_reason(result.status, result.finish_reason)
        usage = {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
        }
        return cls(
            id=completion_id(result.workflow_id, result.turn),
            created=created,
            model=model,
            choices=[Choice(message=AssistantMessage(content=result.reply), finish_reason=reason)],
            usage=CompletionUsage.of(usage),
        )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "orchestrator"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
