"""OpenAI's error shape, spoken by the OpenAI-compatible routes (api/openai/router.py).

Every error of those routes, wherever it is raised (the token, the tenant's limits, the
body, the turn, the middleware), is `{"error": {"message", "type", "param", "code"}}`, so
OpenAI's SDKs raise their own exceptions from it (`BadRequestError`, `AuthenticationError`,
`ConflictError`, ...). `code` is the code the other routes' problems carry (`unauthenticated`,
`rate_limited`, `session_closed`, ...) or one of OpenAI's (`model_not_found`,
`unknown_parameter`, ...). The status is the other routes' too, but for 422, which is 400
here, as OpenAI answers every request it cannot take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

#: The routes that speak OpenAI's dialect, errors included.
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
MODERATIONS_PATH = "/v1/moderations"

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


def speaks_openai(path: str) -> bool:
    return path in (CHAT_PATH, MODELS_PATH, MODERATIONS_PATH) or path.startswith(MODELS_PATH + "/")


def error_type(status: int) -> str:
    """OpenAI's `type` for a status: `invalid_request_error` for what the client can fix."""
    if status >= 500:
        return "server_error"
    return _TYPES.get(status, "invalid_request_error")


def error_body(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def openai_error(
    status: int,
    code: str,
    message: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    status = 400 if status == 422 else status
    sent = dict(headers or {})
    if status == 409:
        # OpenAI's SDKs retry a 409 (a lock timeout, at OpenAI); here a conflict stays one.
        sent["X-Should-Retry"] = "false"
    return JSONResponse(error_body(status, code, message, param), status_code=status, headers=sent)


class OpenAIErrorDetail(BaseModel):
    message: str = Field(description="what happened and what to do")
    type: str = Field(
        description="invalid_request_error, authentication_error, permission_error, "
        "rate_limit_error or server_error"
    )
    param: str | None = Field(description="the request field at fault, e.g. `messages[2].role`")
    code: str | None = Field(description="stable, for programs")


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


_DESCRIPTIONS = {
    400: "The request cannot be taken as it is: a field that does not validate, an unknown "
    "or unsupported field (`param` names it), a sampling value over the operator's limit.",
    401: "The bearer token is missing or refused.",
    403: "The token's role may not do this, or the session is another user's.",
    404: "No such model.",
    409: "The earlier messages are not the session's (`history_mismatch`), a closed session, "
    "a cancelled turn, or policy headers that differ from the active policy.",
    413: "The body is larger than 64 KiB.",
    429: "Over one of the tenant's limits; retry after `Retry-After` seconds.",
    503: "A dependency (Temporal, Redis, the SLM) does not answer; retry.",
    504: "The turn took longer than ORCH_MAX_TURN_SECONDS.",
}
_EXAMPLES = {
    400: ("unsupported_parameter", "tools", "`tools` is not supported: this API offers no tools."),
    401: ("unauthenticated", None, "Send 'Authorization: Bearer <token>'."),
    403: ("forbidden", None, "This route needs the 'user' role; the token has []."),
    404: ("model_not_found", "model", "The model `gpt-4o` does not exist; see GET /v1/models."),
    409: ("history_mismatch", "messages", "The earlier messages are not this session's."),
    413: ("payload_too_large", None, "The request body is larger than 64 KiB; send less."),
    429: ("rate_limited", None, "Tenant acme is over 50 requests per second; retry after 1 s."),
    503: ("dependency_unavailable", None, "The language model did not answer; retry."),
    504: ("turn_timeout", None, "The turn ran longer than its limit of 300 s and was stopped."),
}


def openai_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of an OpenAI-compatible route for the error statuses it can answer."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        code, param, message = _EXAMPLES[status]
        example = error_body(status, code, message, param)
        responses[status] = {
            "model": OpenAIError,
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"example": example}},
        }
    return responses
