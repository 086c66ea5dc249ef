"""The HTTP rules every route follows (docs/interface.md, section 4): problem+json,
X-Trace-Id on every response, 413 before parsing (chunked bodies too), 422 for unknown fields,
admin-only routes.

This module serves the real application (create_app, its routes, middleware, handlers and
auth) on a real uvicorn server, plus three routes the product lacks: an admin-only one (the
admin routes come with training mode), one that fails with a bug, and one that echoes a
body of any size up to the limit.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest_asyncio
import uvicorn
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from api.app import create_app
from api.deps import AdminPrincipal, UserPrincipal
from core.settings import Settings
from deploy.services import free_ports
from tests.helpers.auth import bearer

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


probe_routes = APIRouter(prefix="/v1/test")


@probe_routes.post("/notes")
async def take_note(note: Note, principal: UserPrincipal) -> dict[str, int]:
    return {"length": len(note.text)}


@probe_routes.post("/admin-only")
async def admin_only(principal: AdminPrincipal) -> dict[str, str]:
    return {"tenant": principal.tenant}


@probe_routes.get("/boom")
async def boom() -> None:
    raise RuntimeError("a bug")


@pytest_asyncio.fixture(scope="module")
async def app_url(settings: Settings) -> AsyncIterator[str]:
    app = create_app(settings)
    app.include_router(probe_routes)
    port = free_ports(1)[0]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await serving


@pytest_asyncio.fixture
async def client(app_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=app_url, timeout=30) as http:
        yield http


async def test_body_over_64_kib_is_413_before_parsing(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    # Not even valid JSON: a 413 (not a 422) proves the body was refused before parsing.
    response = await client.post(
        "/v1/conversation/step", content=b"x" * (64 * 1024 + 1), headers=bearer(token)
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert TRACE_ID.match(response.headers["x-trace-id"])
    assert response.json()["trace_id"] == response.headers["x-trace-id"]


async def test_chunked_body_over_64_kib_is_413(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * 4096  # 80 KiB in all, with no Content-Length

    response = await client.post("/v1/conversation/step", content=chunks(), headers=bearer(token))
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_body_just_under_the_limit_is_accepted(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    text = "z" * (64 * 1024 - 20)
    response = await client.post("/v1/test/notes", json={"text": text}, headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"length": len(text)}


async def test_unknown_field_is_422_problem(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    response = await client.post(
        "/v1/conversation/step", json={"message": "hi", "colour": "red"}, headers=bearer(token)
    )
    assert response.status_code == 422
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert body["code"] == "validation_error"
    assert body["errors"][0]["loc"] == ["body", "colour"]
    assert "colour" in body["detail"]


async def test_user_on_admin_route_is_403_and_admin_passes(
    client: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    refused = await client.post("/v1/test/admin-only", headers=bearer(token))
    assert refused.status_code == 403
    assert "admin" in refused.json()["detail"]
    allowed = await client.post("/v1/test/admin-only", headers=bearer(token, "globex", "admin"))
    assert allowed.status_code == 200
    assert allowed.json() == {"tenant": "globex"}


async def test_unhandled_error_is_500_problem_with_trace_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/test/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error"
    assert "a bug" not in response.text  # internals stay in the log
    assert TRACE_ID.match(response.headers["x-trace-id"])
    assert body["trace_id"] == response.headers["x-trace-id"]


async def test_unknown_route_is_404_problem_with_trace_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert TRACE_ID.match(response.headers["x-trace-id"])


async def test_incoming_traceparent_is_continued(client: httpx.AsyncClient) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await client.get(
        "/healthz", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    )
    assert response.headers["x-trace-id"] == trace_id


async def test_every_response_has_a_fresh_trace_id(client: httpx.AsyncClient) -> None:
    ids = {(await client.get("/healthz")).headers["x-trace-id"] for _ in range(5)}
    assert len(ids) == 5 and all(TRACE_ID.match(i) for i in ids)
