"""RFC 9457 problem details: the shape of every error the API returns, but on the routes
that speak OpenAI's dialect, which answer OpenAI's shape (api/openai/errors.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.openai.errors import openai_error, speaks_openai
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
    path: str = "",
    **extensions: Any,
) -> Response:
    """The error as the route at `path` speaks it: problem+json, or OpenAI's shape."""
    if speaks_openai(path):
        return openai_error(status, code, detail, extensions.get("param"), headers)
    body = problem_body(
        status, code, title, detail, trace_id_var.get(), **jsonable_encoder(extensions)
    )
    return ProblemResponse(body, status_code=status, headers=headers)


def from_error(error: OrchestratorError, path: str = "") -> Response:
    headers: dict[str, str] | None = None
    if error.status == 401:
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    elif error.status == 429 or "retry_after_seconds" in error.extensions:
        headers = {"Retry-After": str(error.extensions.get("retry_after_seconds", 1))}
    return problem(
        error.status,
        error.code,
        error.title,
        error.detail,
        headers=headers,
        path=path,
        **error.extensions,
    )


async def _orchestrator_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, OrchestratorError)
    return from_error(error, request.url.path)


def validation_details(raw: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
    """A validation problem's `detail` (the first bad field) and `errors`, from pydantic's."""
    errors = [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in raw]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"])
    return (f"{where}: {message}" if where else message), errors


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    detail, errors = validation_details(error.errors())
    return problem(
        422, "validation_error", "Invalid request", detail, path=request.url.path, errors=errors
    )


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    code = _HTTP_CODES.get(error.status_code, f"http_{error.status_code}")
    title = code.replace("_", " ").capitalize()
    return problem(
        error.status_code, code, title, str(error.detail), error.headers, request.url.path
    )


async def _redis_error(request: Request, error: Exception) -> Response:
    # Redis holds the streams, leases and limits a route reads: its outage is the client's
    # to retry, not a fault of the request.
    return from_error(
        DependencyUnavailable("Redis is unavailable; retry in a moment.", dependency="redis"),
        request.url.path,
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrchestratorError, _orchestrator_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RedisError, _redis_error)
