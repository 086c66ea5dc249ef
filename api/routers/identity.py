"""Who the bearer token says the caller is: the first thing to check when a call is refused."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import UserPrincipal

router = APIRouter(prefix="/v1", tags=["identity"])


class Identity(BaseModel):
    subject: str
    tenant: str
    roles: list[str]


@router.get("/whoami")
async def whoami(principal: UserPrincipal) -> Identity:
    return Identity(
        subject=principal.subject, tenant=principal.tenant, roles=sorted(principal.roles)
    )
