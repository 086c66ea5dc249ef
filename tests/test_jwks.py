"""Tokens of an identity provider (ORCH_AUTH_JWKS_URL): its keys are trusted while it
publishes them, and a key it removes is refused once the cached key set is renewed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from pydantic import AnyHttpUrl

from api.app import create_app
from core.settings import Settings
from deploy.services import free_ports


class KeySet(ThreadingHTTPServer):
    """An identity provider's /jwks.json, whose keys the test changes."""

    keys: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: KeySet

    def do_GET(self) -> None:
        body = json.dumps({"keys": self.server.keys}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def key_set() -> Iterator[KeySet]:
    server = KeySet(("127.0.0.1", 0), _Handler)
    server.keys = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    public: dict[str, Any] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**public, "kid": kid, "alg": "ES256", "use": "sig"}


def _token(settings: Settings, key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    now = int(time.time())
    claims = {
        "sub": "alice",
        "tenant": "acme",
        "roles": ["user"],
        "iss": settings.auth_issuer,
        "aud": settings.auth_audience,
        "iat": now,
        "exp": now + 300,
    }
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


async def test_a_key_the_provider_removes_is_refused(settings: Settings, key_set: KeySet) -> None:
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    key_set.keys = [_jwk(old, "old")]
    url = f"http://127.0.0.1:{key_set.server_address[1]}/jwks.json"
    idp = settings.model_copy(
        update={"auth_jwks_url": AnyHttpUrl(url), "auth_jwks_cache_seconds": 1.0}
    )
    port = free_ports(1)[0]
    server = uvicorn.Server(
        uvicorn.Config(create_app(idp), host="127.0.0.1", port=port, log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:

            async def whoami(token: str) -> int:
                response = await api.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
                return response.status_code

            assert await whoami(_token(idp, old, "old")) == 200
            key_set.keys = [_jwk(new, "new")]  # the provider rotates its key
            await asyncio.sleep(1.5)  # past the cached key set's lifetime
            assert await whoami(_token(idp, new, "new")) == 200
            assert await whoami(_token(idp, old, "old")) == 401
    finally:
        server.should_exit = True
        await serving
