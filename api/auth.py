"""Bearer-token verification (docs/interface.md, section 3).

Algorithms are pinned: the dev key verifies ES256 only, a JWKS verifies the configured
asymmetric list only, so `alg: none` and HMAC-with-the-public-key confusions never pass.
An identity provider's keys are fetched as api/key_set.py says. A client address whose
tokens were refused `auth_refusals_per_minute` times within a minute is answered 429 before
any token of it is read, until that minute has passed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import jwt

from api.key_set import KeySet
from core.errors import Forbidden, RateLimited, Unauthenticated
from core.settings import ConfigurationError, Settings
from core.tokens import DEV_ALGORITHM, TENANT_PATTERN, load_or_create_key, load_public_key

log = logging.getLogger("orchestrator.api")
_REQUIRED_CLAIMS = ["sub", "tenant", "roles", "iss", "aud", "exp"]
LEEWAY_SECONDS = 5


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str
    roles: frozenset[str]
    #: The token's `exp` (seconds since the epoch): what a WebSocket opened with it lasts.
    expires_at: float | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def require(self, role: str) -> None:
        # An admin of a tenant may do everything a user of it may.
        if role not in self.roles and not (role == "user" and "admin" in self.roles):
            raise Forbidden(
                f"This route needs the '{role}' role; the token has {sorted(self.roles)}."
            )


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._jwks: KeySet | None = None
        self._refusals = Refusals(settings.auth_refusals_per_minute)
        if settings.auth_jwks_url is not None:
            self._jwks = KeySet(
                str(settings.auth_jwks_url),
                settings.auth_jwks_cache_seconds,
                settings.auth_jwks_refresh_seconds,
            )
            self._algorithms = list(settings.auth_algorithms)
            self._public_key = None
        elif settings.auth_public_key_file is not None:
            self._public_key = load_public_key(settings.auth_public_key_file)
            self._algorithms = [DEV_ALGORITHM]
        elif settings.dev_mode:
            self._public_key = load_or_create_key(
                settings.signing_key_path, create=True
            ).public_key()
            self._algorithms = [DEV_ALGORITHM]
        else:
            # An API that holds the key its tokens are signed with lets whoever reads its
            # files mint any tenant's admin token.
            raise ConfigurationError(
                "ORCH_AUTH_JWKS_URL: not set; outside dev mode the API verifies tokens with "
                "your identity provider's keys (ORCH_AUTH_JWKS_URL) or a public key "
                "(ORCH_AUTH_PUBLIC_KEY_FILE), never with a signing key it holds; for "
                "development only, set ORCH_DEV_MODE=true"
            )

    async def verify(self, authorization: str | None, address: str | None = None) -> Principal:
        """The caller `authorization` names; `address`, the client's, counts refusals."""
        self._refusals.admit(address)
        try:
            return await self._verify(authorization)
        except Unauthenticated:
            self._refusals.count(address)
            raise

    async def _verify(self, authorization: str | None) -> Principal:
        token = _bearer(authorization)
        try:
            if self._jwks is not None:
                header = jwt.get_unverified_header(token)
                key = (await self._jwks.key(header.get("kid"))).key
            else:
                assert self._public_key is not None
                key = self._public_key
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._settings.auth_audience,
                issuer=self._settings.auth_issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"The bearer token was refused: {error}.") from None
        return _principal(claims)


class Refusals:
    """Refused tokens per client address within the current minute (this process's count)."""

    _WINDOW_SECONDS = 60.0
    #: Addresses remembered at most: past it, windows that ended are forgotten first.
    _MAX_ADDRESSES = 10_000

    def __init__(self, per_minute: int) -> None:
        self._limit = per_minute
        self._counts: dict[str, tuple[float, int]] = {}

    def admit(self, address: str | None) -> None:
        if not self._limit or address is None:
            return
        started, count = self._counts.get(address, (0.0, 0))
        left = started + self._WINDOW_SECONDS - time.monotonic()
        if count >= self._limit and left > 0:
            raise RateLimited(
                f"Too many refused tokens from {address}; send a valid token after "
                f"{int(left) + 1} s.",
                retry_after_seconds=int(left) + 1,
            )

    def count(self, address: str | None) -> None:
        if not self._limit or address is None:
            return
        now = time.monotonic()
        started, count = self._counts.get(address, (now, 0))
        if now - started >= self._WINDOW_SECONDS:
            started, count = now, 0
        self._counts[address] = (started, count + 1)
        if len(self._counts) > self._MAX_ADDRESSES:
            ended = now - self._WINDOW_SECONDS
            self._counts = {a: v for a, v in self._counts.items() if v[0] > ended}


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated(
            "Send 'Authorization: Bearer <token>'; get one with `orchestrator token`."
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def _principal(claims: dict[str, object]) -> Principal:
    tenant, roles, subject = claims["tenant"], claims["roles"], claims["sub"]
    if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
        raise Unauthenticated("The token's 'tenant' claim is not a valid tenant id.")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise Unauthenticated("The token's 'roles' claim must be a list of strings.")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("The token's 'sub' claim must be a non-empty string.")
    expires = claims.get("exp")
    return Principal(
        subject=subject,
        tenant=tenant,
        roles=frozenset(roles),
        expires_at=float(expires) if isinstance(expires, int | float) else None,
    )
