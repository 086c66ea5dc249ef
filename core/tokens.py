"""Bearer tokens: the claim formats and the dev signing key, an EC P-256 key.

`orchestrator token` signs with it and the API verifies with its public half, so both sides
of one data dir agree without any setup. The key is made only by an explicit dev action
(`orchestrator dev`, `orchestrator token`, ORCH_DEV_MODE=true), never by an API that merely
lacks a JWKS URL, and is refused when other users can read it. Production verifies against
ORCH_AUTH_JWKS_URL instead and never reads this file.
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

from core.files import missing_key, read_private, write_once
from core.settings import ConfigurationError, Settings

DEV_ALGORITHM = "ES256"
#: `user` and `admin` are a tenant's roles; `operator` is the platform's (the codec endpoint,
#: which reads every tenant's payloads), never implied by a tenant's.
ROLES = ("user", "admin", "operator")
#: A whole tenant id (used with fullmatch: `$` would also let a trailing newline through).
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """The EC public key (PEM) at `path` (ORCH_AUTH_PUBLIC_KEY_FILE)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"ORCH_AUTH_PUBLIC_KEY_FILE: {path}: {error}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigurationError(f"ORCH_AUTH_PUBLIC_KEY_FILE: {path} is not an EC public key")
    return key


def load_or_create_key(path: Path, *, create: bool) -> ec.EllipticCurvePrivateKey:
    """Read the PEM key at `path`; if it is absent, create it atomically (mode 0600) when
    `create`, else stop start-up saying how to configure tokens."""
    if not path.exists():
        if not create:
            raise missing_key(
                "ORCH_AUTH_JWKS_URL",
                path,
                "not set, and there is no signing key; in production point it at your "
                "identity provider's key set (JWKS)",
            )
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_once(path, pem)
    key = serialization.load_pem_private_key(
        read_private(path, "ORCH_AUTH_KEY_FILE"), password=None
    )
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
    # Asking for a dev token is a dev action: it makes the key if there is none yet.
    key = load_or_create_key(settings.signing_key_path, create=True)
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
