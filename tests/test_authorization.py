"""Every refused credential on every /v1 route, with its exact status, and nothing started
(docs/api.md, Authentication): the table below must name every operation of docs/openapi.json.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from core.settings import Settings
from tests.helpers.tokens import forged, refused_tokens, signed

_HELLO = {"role": "user", "content": "Hello."}
_NEW = {"session_id": "{new}"}
_JOB = "0123456789abcdef0123456789abcdef"
#: (method, path, body, role): `{s}` is a session of the calling tenant with one ended turn.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/v1/whoami", None, "user"),
    ("POST", "/v1/conversation/step", {"session_id": "{new}", "message": "Hello."}, "user"),
    ("POST", "/v1/conversation/stream", {"session_id": "{new}", "message": "Hello."}, "user"),
    ("POST", "/v1/chat/stream", {"session_id": "{new}", "message": "Hello."}, "user"),
    ("GET", "/v1/conversation/{s}", None, "user"),
    ("GET", "/v1/conversations", None, "user"),
    ("POST", "/v1/conversation/{s}/feedback", {"turn": 1, "rating": 1}, "user"),
    ("POST", "/v1/conversation/{s}/turns/1/cancel", None, "user"),
    ("POST", "/v1/conversation/{s}/close", None, "user"),
    ("DELETE", "/v1/conversation/{s}", None, "user"),
    ("POST", "/v1/erasure", {"subject": "nobody"}, "admin"),
    ("GET", "/v1/erasure/" + _JOB, None, "admin"),
    ("GET", "/v1/conversation/{s}/turns/1/stream", None, "user"),
    ("GET", "/v1/training", None, "user"),
    ("GET", "/v1/policy", None, "user"),
    ("GET", "/v1/usage", None, "user"),
    ("PUT", "/v1/policy", {"categories": {}}, "admin"),
    ("POST", "/v1/training/enable", {"ttl_seconds": 60, "reason": "labelling"}, "admin"),
    ("POST", "/v1/training/disable", {"reason": "done"}, "admin"),
    ("POST", "/v1/codec/encode", {"payloads": []}, "operator"),
    ("POST", "/v1/codec/decode", {"payloads": []}, "operator"),
    (
        "POST",
        "/v1/chat/completions",
        {"model": "m", "messages": [_HELLO], "metadata": _NEW},
        "user",
    ),
    ("GET", "/v1/models", None, "user"),
    ("POST", "/v1/moderations", {"input": "Hello."}, "user"),
    ("GET", "/v1/models/{model}", None, "user"),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _, _ in ROUTES]


def _code(response: httpx.Response) -> str:
    """The error's code: a problem's, or, on the OpenAI-compatible routes, OpenAI's shape's."""
    body = response.json()
    if response.request.url.path.startswith(("/v1/chat/completions", "/v1/models", "/v1/moder")):
        assert response.headers["content-type"] == "application/json"
        return str(body["error"]["code"])
    assert response.headers["content-type"] == "application/problem+json"
    return str(body["code"])


def _credentials(settings: Settings) -> dict[str, str | None]:
    """Each refused credential as the Authorization header it sends (None: no header)."""
    now = int(time.time())
    refused = {f"token {case}": f"Bearer {bad}" for case, bad in refused_tokens(settings).items()}
    newline_tenant = signed(settings, tenant="acme\n")
    return {
        "missing": None,
        "not bearer": "Basic YWxpY2U6c2VjcmV0",
        "bearer without a token": "Bearer",
        "not yet valid": f"Bearer {signed(settings, nbf=now + 600, iat=now + 600)}",
        "tenant with a trailing newline": f"Bearer {newline_tenant}",
        "unsigned with alg none": f"Bearer {forged({'alg': 'none'}, {'sub': 'x'}, None)}",
        **refused,
    }


def test_the_table_names_every_v1_operation() -> None:
    document = json.loads((Path(__file__).parent.parent / "docs" / "openapi.json").read_text())
    operations = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for method in item
    }
    placeholders = {"{s}": "{session_id}", "/1/": "/{turn}/", _JOB: "{job_id}"}
    named = set()
    for method, path, _, _ in ROUTES:
        for value, name in placeholders.items():
            path = path.replace(value, name)
        named.add(f"{method} {path}")
    assert named == operations


async def _request(
    api: httpx.AsyncClient,
    route: tuple[str, str, dict[str, Any] | None, str],
    session: str,
    new: str,
    authorization: str | None,
) -> httpx.Response:
    method, path, body, _ = route
    if body is not None:
        body = json.loads(json.dumps(body).replace("{new}", new))
    headers = {} if authorization is None else {"Authorization": authorization}
    return await api.request(method, path.replace("{s}", session), json=body, headers=headers)


async def _not_started(temporal: Client, workflow_id: str) -> bool:
    try:
        await temporal.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        return "not found" in str(error).lower()
    return False


@pytest.fixture(scope="module")
def session(api_url: str, token: Callable[..., str]) -> str:
    """An acme session with one ended turn, for the routes that name one."""
    session_id = f"s-{uuid.uuid4().hex[:12]}"
    response = httpx.post(
        f"{api_url}/v1/conversation/step",
        json={"session_id": session_id, "message": "Hello."},
        headers={"Authorization": f"Bearer {token('acme', 'user')}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return session_id


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_every_refused_credential_is_401_and_starts_nothing(
    api: httpx.AsyncClient, settings: Settings, temporal: Client, session: str,
    route: tuple[str, str, dict[str, Any] | None, str],
) -> None:  # fmt: skip
    for case, authorization in _credentials(settings).items():
        new = f"s-{uuid.uuid4().hex[:12]}"
        response = await _request(api, route, session, new, authorization)
        assert response.status_code == 401, f"{case}: {response.text}"
        assert _code(response) == "unauthenticated", case
        assert response.headers["www-authenticate"].startswith("Bearer"), case
        if "{new}" in json.dumps(route[2]):
            assert await _not_started(temporal, f"conversation:acme:{new}"), case


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_a_role_the_route_does_not_allow_is_403_and_starts_nothing(
    api: httpx.AsyncClient, settings: Settings, temporal: Client, session: str,
    route: tuple[str, str, dict[str, Any] | None, str],
) -> None:  # fmt: skip
    # A user on an admin route, a tenant's admin on an operator route; a token of no known
    # role on a user route.
    roles = {"admin": ["user"], "operator": ["admin", "user"]}.get(route[3], ["auditor"])
    new = f"s-{uuid.uuid4().hex[:12]}"
    authorization = f"Bearer {signed(settings, roles=roles)}"
    response = await _request(api, route, session, new, authorization)
    assert response.status_code == 403, response.text
    assert _code(response) == "forbidden"
    if "{new}" in json.dumps(route[2]):
        assert await _not_started(temporal, f"conversation:acme:{new}")


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if "{s}" in r[1]], ids=lambda r: f"{r[0]} {r[1]}"
)
async def test_another_tenant_sees_no_such_session(
    api: httpx.AsyncClient, token: Callable[..., str], session: str,
    route: tuple[str, str, dict[str, Any] | None, str],
) -> None:  # fmt: skip
    authorization = f"Bearer {token('globex', 'user')}"
    response = await _request(api, route, session, "", authorization)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "not_found"
    # Acme's session is as it was: one turn, still active.
    transcript = await api.get(
        f"/v1/conversation/{session}", headers={"Authorization": f"Bearer {token('acme', 'user')}"}
    )
    body = transcript.json()
    assert body["status"] == "active" and [t["turn"] for t in body["turns"]] == [1]
