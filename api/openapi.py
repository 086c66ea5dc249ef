"""The API's OpenAPI document: what FastAPI derives from the routes, plus what it cannot see.

Routes declare their own error statuses with `problems(...)`; this module gives them the one
problem+json schema they share, the policy headers every `/v1` route reads (the policy
middleware checks them, not the route), and the event types of the SSE routes. The
document is committed as docs/openapi.json (`python -m api.openapi > docs/openapi.json`),
and a test fails when it is stale.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.openai.errors import speaks_openai
from api.openai.protocol import ChatCompletionRequest
from core.errors import (
    PROBLEM_TYPE_PREFIX,
    BadRequest,
    DependencyUnavailable,
    Forbidden,
    InvalidRequest,
    NotFound,
    OrchestratorError,
    PayloadTooLarge,
    RateLimited,
    SessionClosed,
    TurnTimedOut,
    Unauthenticated,
)

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

#: RFC 9457 problem details, with the `code` and `trace_id` every answer carries; other
#: members are the problem's extensions (e.g. `errors` of a 422, `dependency` of a 503).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code", "trace_id"],
    "properties": {
        "type": {"type": "string", "description": f"{PROBLEM_TYPE_PREFIX}<code>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what happened and what to do"},
        "code": {"type": "string", "description": "stable, for programs"},
        "trace_id": {"type": "string", "description": "the response's X-Trace-Id"},
    },
    "additionalProperties": True,
}

_CONFLICT = (
    "A conflict with the state: a closed session, an ended turn, another admin's training "
    "lock, or policy headers that differ from the active policy."
)
_LIMITED = (
    "Over one of the tenant's limits (requests per second, streams open, turns in flight "
    "per session); nothing was started. Retry after `Retry-After` seconds."
)
#: What each status means on this API, the error behind it, and an example's detail.
_STATUSES: dict[int, tuple[str, type[OrchestratorError], str]] = {
    400: ("The body is not JSON in UTF-8.", BadRequest, "There was an error parsing the body"),
    401: ("The bearer token is missing or refused.", Unauthenticated,
          "Send 'Authorization: Bearer <token>'; get one with `orchestrator token`."),
    403: ("The token's role may not do this.", Forbidden,
          "This route needs the 'admin' role; the token has ['user']."),
    404: ("No such session or turn for this tenant.", NotFound, "No session s1."),
    409: (_CONFLICT, SessionClosed, "Session s1 is closed; start a new session."),
    413: ("The body is larger than 64 KiB.", PayloadTooLarge,
          "The request body is larger than 65536 bytes."),
    422: ("The request does not validate; `errors` lists every field.", InvalidRequest,
          "body.message: String should have at least 1 character"),
    429: (_LIMITED,
          RateLimited, "Tenant acme is over 50 requests per second (burst 100); retry after 1 s."),
    503: ("A dependency (Temporal, Redis, the token keys) does not answer; retry.",
          DependencyUnavailable, "Redis is unavailable; retry in a moment."),
    504: ("The turn took longer than ORCH_MAX_TURN_SECONDS.", TurnTimedOut,
          "Turn 1 took longer than 300 s and was stopped."),
}  # fmt: skip

#: The events of a turn's stream, in the order they can come.
SSE_EVENTS = {
    "turn.accepted": "the turn was admitted: session, turn number, trace id",
    "verdict": "the input check's verdict",
    "token": "one delta of the reply: `index` and `delta`",
    "retract": "drop the text sent so far: `reason` is `retry` (a retried SLM call starts "
    "again) or `moderation` (the reply was refused)",
    "turn.completed": "final: the turn's whole result, as the step route returns it",
    "turn.refused": "final: the refusal, as the step route returns it",
    "turn.cancelled": "final: the turn was cancelled",
    "error": "final: a problem document (the turn failed or timed out)",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route for the problem statuses it can answer."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, error, detail = _STATUSES[status]
        example = error(detail).problem(trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
        content = {"application/problem+json": {"schema": _PROBLEM_REF, "example": example}}
        responses[status] = {"description": description, "content": content}
        if status == 429:
            example["retry_after_seconds"] = 1
            responses[status]["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before trying again",
                    "schema": {"type": "integer"},
                }
            }
    return responses


#: Every `/v1` route: a missing or refused token, a role, a policy mismatch, a tenant's
#: limit, a dependency.
V1_PROBLEMS = problems(401, 403, 409, 429, 503)

_POLICY_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": f"{what}; a value that differs from the active one is refused with 409 "
        "`policy_mismatch` before anything starts.",
    }
    for name, what in (
        ("X-Policy-Version", "The policy version the client expects"),
        ("X-Constitution-Hash", "The constitution hash the client expects"),
    )
]


def openapi_document(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    schemas = document["components"].setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    # Read by its route itself, to answer in OpenAI's error shape: described here.
    chat = ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(chat.pop("$defs", {}))
    schemas["ChatCompletionRequest"] = chat
    for path, operations in document["paths"].items():
        if not path.startswith("/v1"):
            continue
        for operation in operations.values():
            operation.setdefault("parameters", []).extend(_POLICY_HEADERS)
            stream = operation["responses"].get("200", {}).get("content", {})
            # The turn's own events (FastAPI's SSE routes); the OpenAI route says its own.
            if "itemSchema" in stream.get("text/event-stream", {}):
                _describe_events(operation["responses"]["200"], stream["text/event-stream"])
    _openai_dialect(document)
    app.openapi_schema = document
    return document


def _openai_dialect(document: dict[str, Any]) -> None:
    """The OpenAI-compatible routes answer a request that does not validate with 400, in
    OpenAI's error shape: FastAPI's 422 is not theirs."""
    for path, operations in document["paths"].items():
        if speaks_openai(path):
            for operation in operations.values():
                operation["responses"].pop("422", None)
    schemas = document["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):  # in that order: one uses the other
        if f'"#/components/schemas/{name}"' not in json.dumps([document["paths"], schemas]):
            schemas.pop(name, None)


def _describe_events(response: dict[str, Any], media: dict[str, Any]) -> None:
    lines = [f"- `{name}`: {what}" for name, what in SSE_EVENTS.items()]
    response["description"] = (
        "Server-sent events. Each `id` is `<turn>-<n>`; send the last one back as "
        "`Last-Event-ID` on the turn's stream route to resume. A `: ping` comment comes every "
        "15 s. `data` is JSON. Events:\n" + "\n".join(lines)
    )
    # FastAPI writes OpenAPI 3.2's `itemSchema` into this 3.1 document, which 3.1 tools
    # refuse. Before 3.2, a stream's `schema` describes each of its events: so here.
    item = media.pop("itemSchema", {"type": "object", "properties": {}})
    item["properties"]["event"] = {"type": "string", "enum": list(SSE_EVENTS)}
    item["required"] = ["event", "data"]
    item["description"] = "one event of the stream"
    media["schema"] = item


def main() -> None:
    from api.app import create_app
    from core.settings import load_settings

    print(
        json.dumps(
            openapi_document(create_app(load_settings(dev_mode=True))), indent=2, sort_keys=True
        )
    )


if __name__ == "__main__":
    main()
