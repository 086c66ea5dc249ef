"""Tokens of an identity provider (ORCH_AUTH_JWKS_URL): its keys are trusted while it
publishes them, and a key it removes is refused once the cached key set is renewed; no
flood of tokens makes the API fetch the keys per token, an outage of the provider keeps the
keys it published, and an address that sends refused tokens is slowed down."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from pydantic import AnyHttpUrl

from core.settings import Settings
from tests.helpers.own_api import own_api


class KeySet(ThreadingHTTPServer):
    """An identity provider's /jwks.json, whose keys the test changes, and which counts the
    fetches and fails them while `failing`."""

    keys: list[dict[str, Any]]
    fetches: int = 0
    failing: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: KeySet

    def do_GET(self) -> None:
        self.server.fetches += 1
        if self.server.failing:
            self.send_error(500)
            return
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


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


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


@asynccontextmanager
async def _api(settings: Settings, key_set: KeySet, **update: Any) -> AsyncIterator[Api]:
    """An API that trusts `key_set`, on a port of its own, with `update` to its settings."""
    url = f"http://127.0.0.1:{key_set.server_address[1]}/jwks.json"
    idp = settings.model_copy(update={"auth_jwks_url": AnyHttpUrl(url), **update})
    async with own_api(idp) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield Api(client, idp)


class Api:
    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client, self.settings = client, settings

    async def whoami(self, token: str) -> httpx.Response:
        return await self.client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})


async def test_a_key_the_provider_removes_is_refused(settings: Settings, key_set: KeySet) -> None:
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    key_set.keys = [_jwk(old, "old")]
    async with _api(settings, key_set, auth_jwks_cache_seconds=1.0) as api:
        assert (await api.whoami(_token(api.settings, old, "old"))).status_code == 200
        key_set.keys = [_jwk(new, "new")]  # the provider rotates its key
        await asyncio.sleep(1.5)  # past the cached key set's lifetime
        assert (await api.whoami(_token(api.settings, new, "new"))).status_code == 200
        assert (await api.whoami(_token(api.settings, old, "old"))).status_code == 401


async def test_a_flood_of_unknown_key_ids_fetches_the_keys_once_per_interval(
    settings: Settings, key_set: KeySet
) -> None:
    known, stranger = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    key_set.keys = [_jwk(known, "known")]
    async with _api(settings, key_set, auth_refusals_per_minute=0) as api:
        valid = _token(api.settings, known, "known")
        assert (await api.whoami(valid)).status_code == 200
        made_up = [_token(api.settings, stranger, uuid.uuid4().hex) for _ in range(500)]
        answers = await asyncio.gather(
            *(api.whoami(token) for token in made_up),
            *(api.whoami(valid) for _ in range(20)),  # callers with a good token, meanwhile
        )
    assert [a.status_code for a in answers[:500]] == [401] * 500
    assert [a.status_code for a in answers[500:]] == [200] * 20
    # The first fetch, and one forced by the first unknown key id; none per token.
    assert key_set.fetches <= 2


async def test_the_keys_of_a_provider_that_fails_after_a_good_fetch_are_kept(
    settings: Settings, key_set: KeySet
) -> None:
    known, rotated = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    key_set.keys = [_jwk(known, "known")]
    update = {"auth_jwks_cache_seconds": 1.0, "auth_jwks_refresh_seconds": 1.0}
    async with _api(settings, key_set, **update) as api:
        assert (await api.whoami(_token(api.settings, known, "known"))).status_code == 200
        key_set.failing = True
        await asyncio.sleep(1.5)  # the set is due for a fetch, which fails
        assert (await api.whoami(_token(api.settings, known, "known"))).status_code == 200
        refused = await api.whoami(_token(api.settings, rotated, "rotated"))
        assert refused.status_code == 401  # not 503: the keys in hand say no
        assert key_set.fetches >= 2
        key_set.failing = False
        key_set.keys = [_jwk(rotated, "rotated")]
        await asyncio.sleep(1.1)
        assert (await api.whoami(_token(api.settings, rotated, "rotated"))).status_code == 200


async def test_an_address_that_sends_refused_tokens_is_answered_429(
    settings: Settings, key_set: KeySet
) -> None:
    known = ec.generate_private_key(ec.SECP256R1())
    key_set.keys = [_jwk(known, "known")]
    async with _api(settings, key_set, auth_refusals_per_minute=5) as api:
        for _ in range(5):
            assert (await api.whoami("not-a-token")).status_code == 401
        limited = await api.whoami(_token(api.settings, known, "known"))
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["code"] == "rate_limited"
