"""The token matrix of docs/interface.md, section 3, against the running API and its dev key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Callable

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.settings import Settings
from core.tokens import load_or_create_key


def _claims(settings: Settings, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "alice",
        "tenant": "acme",
        "roles": ["user"],
        "iss": settings.auth_issuer,
        "aud": settings.auth_audience,
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def _signed(settings: Settings, **overrides: object) -> str:
    key = load_or_create_key(settings.signing_key_path, create=False)
    return jwt.encode(_claims(settings, **overrides), key, algorithm="ES256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forged(header: dict[str, str], claims: dict[str, object], secret: bytes | None) -> str:
    """A token built by hand, as an attacker would: PyJWT refuses to make these."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _refused_tokens(settings: Settings) -> dict[str, str]:
    stranger = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        load_or_create_key(settings.signing_key_path, create=False)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return {
        "bad signature": jwt.encode(_claims(settings), stranger, algorithm="ES256"),
        "expired": _signed(settings, exp=int(time.time()) - 60),
        "wrong issuer": _signed(settings, iss="someone-else"),
        "wrong audience": _signed(settings, aud="another-service"),
        "alg none": _forged({"alg": "none", "typ": "JWT"}, _claims(settings), None),
        "hs256 keyed with the public key": _forged(
            {"alg": "HS256", "typ": "JWT"}, _claims(settings), public_pem
        ),
        "no exp": _signed(settings, exp=None),
        "no tenant": _signed(settings, tenant=None),
        "malformed tenant": _signed(settings, tenant="Acme Corp"),
        "roles not a list": _signed(settings, roles="user"),
        "not a jwt": "not-a-jwt",
    }


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
    bad = _refused_tokens(settings)[case]
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
        "/v1/whoami", headers={"Authorization": f"Bearer {_signed(settings, roles=['auditor'])}"}
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
