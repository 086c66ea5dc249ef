"""Bearer tokens: the claim formats and the dev signing key, an EC P-256 key made on first use.

`orchestrator token` signs with it and the API verifies with its public half, so both sides
of one data dir agree without any setup. Production verifies against ORCH_AUTH_JWKS_URL
instead and never reads this file.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.files import write_once
from core.settings import Settings

DEV_ALGORITHM = "ES256"
ROLES = ("user", "admin")
#: A whole tenant id (used with fullmatch: `$` would also let a trailing newline through).
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read the PEM key at `path`, creating it atomically (mode 0600) if it is absent."""
    if not path.exists():
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_once(path, pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{path} is not an EC private key")
    return key


def key_id(key: ec.EllipticCurvePrivateKey) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(public).hexdigest()[:16]


def mint_token(
    settings: Settings,
    *,
    tenant: str,
    roles: list[str],
    subject: str | None = None,
    ttl_seconds: int = 3600,
) -> str:
    """A bearer token the API of the same data dir (or key file) accepts."""
    key = load_or_create_key(settings.signing_key_path)
    now = int(time.time())
    claims = {
        "sub": subject or f"{tenant}-{roles[0]}",
        "tenant": tenant,
        "roles": roles,
        "iss": settings.auth_issuer,
        "aud": settings.auth_audience,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=DEV_ALGORITHM, headers={"kid": key_id(key)})
