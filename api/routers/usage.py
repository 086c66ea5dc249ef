"""A tenant's usage (its admins) or a user's own: GET /v1/usage."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import ClientsDep, UserPrincipal
from api.openapi import V1_PROBLEMS, problems
from api.schemas.usage import UsageReport
from api.usage_report import MAX_DAYS, quota, usage
from core.errors import Forbidden, InvalidRequest

router = APIRouter(prefix="/v1", tags=["usage"], responses=V1_PROBLEMS)


@router.get("/usage", responses=problems(422))
async def get_usage(
    principal: UserPrincipal,
    clients: ClientsDep,
    start: Annotated[
        dt.date | None, Query(alias="from", description="the first UTC day; default: to")
    ] = None,
    end: Annotated[
        dt.date | None, Query(alias="to", description="the last UTC day; default: today")
    ] = None,
    group_by: Annotated[
        Literal["day", "subject"], Query(description="rows by day or by subject")
    ] = "day",
    subject: Annotated[
        str | None, Query(max_length=256, description="admins: this subject's usage only")
    ] = None,
) -> UsageReport:
    """Turns, prompt and completion tokens, and refusals by category: the tenant's for its
    admins, the caller's own for anyone else; and the quotas of the current window."""
    if subject is not None and not principal.is_admin:
        raise Forbidden("Only a tenant admin may read another subject's usage.")
    whose = subject if subject is not None else (None if principal.is_admin else principal.subject)
    now = dt.datetime.now(dt.UTC)
    end = end or now.date()
    start = start or end
    if start > end or (end - start).days >= MAX_DAYS:
        raise InvalidRequest(f"`from` must be on or before `to`, at most {MAX_DAYS} days apart.")
    total, rows = await usage(clients.redis, principal.tenant, whose, start, end, group_by)
    window = await quota(clients.redis, clients.settings, principal.tenant, principal.subject, now)
    return UsageReport.model_validate(
        {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "group_by": group_by,
            "subject": whose,
            "total": total,
            "groups": rows,
            "quota": window,
        }
    )
