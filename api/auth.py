"""Bearer-token verification (docs/interface.md, section 3).

Algorithms are pinned: the dev key verifies ES256 only, a JWKS verifies the configured
asymmetric list only, so `alg: none` and HMAC-with-the-public-key confusions never pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import jwt
from starlette.concurrency import run_in_threadpool

from core.errors import DependencyUnavailable, Forbidden, Unauthenticated
from core.settings import Settings
from core.tokens import DEV_ALGORITHM, TENANT_PATTERN, load_or_create_key

log = logging.getLogger("orchestrator.api")
_REQUIRED_CLAIMS = ["sub", "tenant", "roles", "iss", "aud", "exp"]
_LEEWAY_SECONDS = 5


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str
    roles: frozenset[str]

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
        self._jwks: jwt.PyJWKClient | None = None
        if settings.auth_jwks_url is not None:
            # The key set is cached for a while, never a key alone: PyJWT's key cache would
            # keep trusting a key the provider removed until the process restarts.
            self._jwks = jwt.PyJWKClient(
                str(settings.auth_jwks_url),
                cache_keys=False,
                lifespan=settings.auth_jwks_cache_seconds,
                timeout=5,
            )
            self._algorithms = list(settings.auth_algorithms)
            self._dev_key = None
        else:
            dev_key = load_or_create_key(settings.signing_key_path, create=settings.dev_mode)
            self._dev_key = dev_key.public_key()
            if not settings.dev_mode and settings.auth_key_file is None:
                log.warning(
                    "verifying tokens with the dev signing key %s: set ORCH_AUTH_JWKS_URL "
                    "in production",
                    settings.signing_key_path,
                )
            self._algorithms = [DEV_ALGORITHM]

    async def verify(self, authorization: str | None) -> Principal:
        token = _bearer(authorization)
        try:
            if self._jwks is not None:
                # PyJWKClient fetches over blocking HTTP (and caches): keep it off the loop.
                key = (await run_in_threadpool(self._jwks.get_signing_key_from_jwt, token)).key
            else:
                assert self._dev_key is not None
                key = self._dev_key
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._settings.auth_audience,
                issuer=self._settings.auth_issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWKClientConnectionError as error:
            raise DependencyUnavailable(f"The token keys could not be fetched: {error}") from None
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"The bearer token was refused: {error}.") from None
        return _principal(claims)


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
    return Principal(subject=subject, tenant=tenant, roles=frozenset(roles))
