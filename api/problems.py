"""RFC 9457 problem details: the one shape of every error the API returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import DependencyUnavailable, OrchestratorError, problem_body
from core.telemetry import trace_id_var

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


class ProblemResponse(JSONResponse):
    media_type = "application/problem+json"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    body = problem_body(
        status, code, title, detail, trace_id_var.get(), **jsonable_encoder(extensions)
    )
    return ProblemResponse(body, status_code=status, headers=headers)


def from_error(error: OrchestratorError) -> ProblemResponse:
    headers: dict[str, str] | None = None
    if error.status == 401:
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    elif error.status == 429:
        headers = {"Retry-After": str(error.extensions.get("retry_after_seconds", 1))}
    return problem(
        error.status, error.code, error.title, error.detail, headers=headers, **error.extensions
    )


async def _orchestrator_error(_: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, OrchestratorError)
    return from_error(error)


def validation_details(raw: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
    """A validation problem's `detail` (the first bad field) and `errors`, from pydantic's."""
    errors = [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in raw]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"])
    return (f"{where}: {message}" if where else message), errors


async def _validation_error(_: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, RequestValidationError)
    detail, errors = validation_details(error.errors())
    return problem(422, "validation_error", "Invalid request", detail, errors=errors)


async def _http_error(_: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _HTTP_CODES.get(error.status_code, f"http_{error.status_code}")
    title = code.replace("_", " ").capitalize()
    return problem(error.status_code, code, title, str(error.detail), headers=error.headers)


async def _redis_error(_: Request, error: Exception) -> ProblemResponse:
    # Redis holds the streams, leases and limits a route reads: its outage is the client's
    # to retry, not a fault of the request.
    return from_error(
        DependencyUnavailable("Redis is unavailable; retry in a moment.", dependency="redis")
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrchestratorError, _orchestrator_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RedisError, _redis_error)
