"""The caller's sessions, listed from Temporal's visibility: GET /v1/conversations."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import ClientsDep, UserPrincipal
from api.openapi import V1_PROBLEMS, problems
from api.schemas.sessions import SessionList, SessionOut
from api.session_search import Cursor, Search, sessions_page
from core.errors import Forbidden

router = APIRouter(prefix="/v1", tags=["conversations"], responses=V1_PROBLEMS)


@router.get("/conversations", responses=problems(422))
async def list_sessions(
    principal: UserPrincipal,
    clients: ClientsDep,
    status: Annotated[
        Literal["active", "closed"] | None, Query(description="only sessions in this status")
    ] = None,
    q: Annotated[
        str, Query(max_length=200, description="words that must all be in the title")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=100, description="at most this many sessions")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=1000, description="`next_cursor` of the previous page")
    ] = None,
    owner: Annotated[
        str | None, Query(max_length=256, description="admins: this subject's sessions")
    ] = None,
    everyone: Annotated[
        bool, Query(alias="all", description="admins: every session of the tenant")
    ] = False,
) -> SessionList:
    """The caller's sessions, newest activity first (an admin may ask for another subject's,
    or the whole tenant's)."""
    if (owner is not None or everyone) and not principal.is_admin:
        raise Forbidden("Only a tenant admin may list another subject's sessions or all.")
    whose = None if everyone else (owner if owner is not None else principal.subject)
    search = Search(principal.tenant, whose, status, q)
    after = Cursor.decode(cursor) if cursor else None
    page, following = await sessions_page(clients, search, limit, after)
    return SessionList(
        sessions=[SessionOut.of(item) for item in page],
        next_cursor=following.encode() if following else None,
    )
