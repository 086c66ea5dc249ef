"""The token matrix of docs/interface.md, section 3, against the running API and its dev key."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import httpx
import jwt
import pytest

from core.settings import Settings
from tests.helpers.tokens import refused_tokens, signed

CASES = [
    "bad signature",
    "expired",
    "wrong issuer",
    "wrong audience",
    "alg none",
    "hs256 keyed with the public key",
    "no exp",
    "no tenant",
    "malformed tenant",
    "roles not a list",
    "not a jwt",
]


async def test_no_token_is_401_with_a_hint(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/whoami")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401 and "orchestrator token" in body["detail"]
    assert body["trace_id"] == response.headers["x-trace-id"]


async def test_not_a_bearer_scheme_is_401(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    response = await api.get("/v1/whoami", headers={"Authorization": f"Basic {token()}"})
    assert response.status_code == 401


@pytest.mark.parametrize("case", CASES)
async def test_refused_token_is_401(api: httpx.AsyncClient, settings: Settings, case: str) -> None:
    bad = refused_tokens(settings)[case]
    response = await api.get("/v1/whoami", headers={"Authorization": f"Bearer {bad}"})
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthenticated"


async def test_valid_token_identifies_tenant_and_roles(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    response = await api.get(
        "/v1/whoami", headers={"Authorization": f"Bearer {token('globex', 'admin', subject='bob')}"}
    )
    assert response.status_code == 200
    assert response.json() == {"subject": "bob", "tenant": "globex", "roles": ["admin"]}


async def test_token_without_a_known_role_is_403(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    response = await api.get(
        "/v1/whoami", headers={"Authorization": f"Bearer {signed(settings, roles=['auditor'])}"}
    )
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


async def test_cli_token_is_accepted_by_the_api(
    api: httpx.AsyncClient,
    settings: Settings,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = run_cli(
        "token",
        "--tenant",
        "initech",
        "--role",
        "user",
        "--ttl",
        "120",
        env={"ORCH_DATA_DIR": str(settings.data_dir)},
    )
    assert result.returncode == 0, result.stderr
    issued = result.stdout.strip()
    response = await api.get("/v1/whoami", headers={"Authorization": f"Bearer {issued}"})
    assert response.status_code == 200
    assert response.json()["tenant"] == "initech"
    claims = jwt.decode(issued, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120


async def test_cli_token_refuses_a_malformed_tenant(
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = run_cli("token", "--tenant", "Not Valid", "--role", "user")
    assert result.returncode == 2
    assert "--tenant" in result.stderr
