"""Who the bearer token says the caller is: the first thing to check when a call is refused."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import UserPrincipal
from api.openapi import V1_PROBLEMS

router = APIRouter(prefix="/v1", tags=["identity"], responses=V1_PROBLEMS)


class Identity(BaseModel):
    subject: str
    tenant: str
    roles: list[str]


@router.get("/whoami")
async def whoami(principal: UserPrincipal) -> Identity:
    return Identity(
        subject=principal.subject, tenant=principal.tenant, roles=sorted(principal.roles)
    )
