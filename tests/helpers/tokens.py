"""Tokens the auth tests make: signed with the dev key, forged, or refused for one reason each
(docs/interface.md, section 3)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.settings import Settings
from core.tokens import load_or_create_key


def claims(settings: Settings, **overrides: object) -> dict[str, object]:
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


def signed(settings: Settings, **overrides: object) -> str:
    key = load_or_create_key(settings.signing_key_path, create=False)
    return jwt.encode(claims(settings, **overrides), key, algorithm="ES256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, str], claims: dict[str, object], secret: bytes | None) -> str:
    """A token built by hand, as an attacker would: PyJWT refuses to make these."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def refused_tokens(settings: Settings) -> dict[str, str]:
    stranger = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        load_or_create_key(settings.signing_key_path, create=False)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return {
        "bad signature": jwt.encode(claims(settings), stranger, algorithm="ES256"),
        "expired": signed(settings, exp=int(time.time()) - 60),
        "wrong issuer": signed(settings, iss="someone-else"),
        "wrong audience": signed(settings, aud="another-service"),
        "alg none": forged({"alg": "none", "typ": "JWT"}, claims(settings), None),
        "hs256 keyed with the public key": forged(
            {"alg": "HS256", "typ": "JWT"}, claims(settings), public_pem
        ),
        "no exp": signed(settings, exp=None),
        "no tenant": signed(settings, tenant=None),
        "malformed tenant": signed(settings, tenant="Acme Corp"),
        "roles not a list": signed(settings, roles="user"),
        "not a jwt": "not-a-jwt",
    }
