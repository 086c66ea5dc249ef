"""`Annotated` dependency aliases, so routes declare what they need in their signature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request, Security
from fastapi.requests import HTTPConnection
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Principal, TokenVerifier
from api.limits import TenantLimits
from api.schemas.conversations import SESSION_ID_PATTERN
from api.tenant_policies import TenantPolicies
from core.clients import Clients
from core.errors import PolicyMismatch
from core.policy import Policy
from core.policy_registry import ActivePolicy
from core.settings import Settings
from core.telemetry import tenant_var


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _clients(request: Request) -> Clients:
    clients: Clients = request.app.state.clients
    return clients


async def _policy(request: Request) -> Policy:
    """The policy file this process loaded: what it redacts before a message is stored."""
    policy: Policy = request.app.state.policy
    return policy


async def _tenant_policies(request: Request) -> TenantPolicies:
    policies: TenantPolicies = request.app.state.tenant_policies
    return policies


async def _active_policy(request: Request) -> dict[str, str]:
    """`policy_version` and `constitution_hash` in force, as the policy headers show them."""
    active: ActivePolicy = request.app.state.active_policy
    return await active.identity()


#: Declares the scheme in the OpenAPI document; the header itself is read and judged by
#: the verifier, whose problems say what was wrong with it.
_BEARER = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT with `sub`, `tenant`, `roles`, `iss`, `aud` and `exp` claims.",
)


async def _principal(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]
) -> Principal:
    return await authenticate(request, request.headers.get("authorization"))


async def authenticate(connection: HTTPConnection, authorization: str | None) -> Principal:
    """Who `authorization` (`Bearer <token>`) says the caller is; one request of its tenant.

    Every request, and every message of a WebSocket, is one: it takes a token from its
    tenant's bucket."""
    verifier: TokenVerifier = connection.app.state.verifier
    address = connection.client.host if connection.client else None
    principal = await verifier.verify(authorization, address)
    tenant_var.set(principal.tenant)
    await _policy_expected(connection, principal.tenant)
    await _tenant_limits(connection).admit(principal.tenant)
    return principal


async def _policy_expected(connection: HTTPConnection, tenant: str) -> None:
    """The tenant's policy goes on the answer's headers (api/policy_headers.py); one other
    than the client expects (`X-Policy-Version`, `X-Constitution-Hash`) is a 409 before
    anything starts."""
    policies: TenantPolicies = connection.app.state.tenant_policies
    identity = await policies.identity(tenant)
    connection.scope.setdefault("state", {})["policy_identity"] = identity
    version, digest = identity["policy_version"], identity["constitution_hash"]
    wanted_version = connection.headers.get("x-policy-version")
    wanted_hash = connection.headers.get("x-constitution-hash")
    if (wanted_version is not None and wanted_version != version) or (
        wanted_hash is not None and wanted_hash.lower() != digest
    ):
        connection.scope["state"]["decision"] = "policy_mismatch"
        raise PolicyMismatch(
            f"The active policy of tenant {tenant} is {version} ({digest}); refresh your "
            "policy and retry.",
            policy_version=version,
            constitution_hash=digest,
        )


def _tenant_limits(connection: HTTPConnection) -> TenantLimits:
    limits: TenantLimits = connection.app.state.limits
    return limits


async def _limits(request: Request) -> TenantLimits:
    """Async, as every dependency here: FastAPI runs a plain function in a worker thread,
    a handoff that cost every turn CPU of its own."""
    return _tenant_limits(request)


async def _user(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    principal.require("user")
    return principal


async def _admin(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    principal.require("admin")
    return principal


async def _codec_user(
    principal: Annotated[Principal, Depends(_principal)],
    settings: Annotated[Settings, Depends(_settings)],
) -> Principal:
    principal.require(settings.codec_role)
    return principal


SettingsDep = Annotated[Settings, Depends(_settings)]
ClientsDep = Annotated[Clients, Depends(_clients)]
PolicyDep = Annotated[Policy, Depends(_policy)]
ActivePolicyDep = Annotated[dict[str, str], Depends(_active_policy)]
TenantPoliciesDep = Annotated[TenantPolicies, Depends(_tenant_policies)]
UserPrincipal = Annotated[Principal, Depends(_user)]
AdminPrincipal = Annotated[Principal, Depends(_admin)]
#: Who may use the codec endpoint: ORCH_CODEC_ROLE (`operator`).
CodecPrincipal = Annotated[Principal, Depends(_codec_user)]
LimitsDep = Annotated[TenantLimits, Depends(_limits)]
#: The session a route names, in its path.
SessionId = Annotated[str, Path(pattern=SESSION_ID_PATTERN)]
#: A client's key that makes a turn's request safe to send again (docs/api.md, Idempotency).
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)]
