"""Bodies of the session list (GET /v1/conversations)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.session_search import SessionItem


class SessionOut(BaseModel):
    session_id: str
    title: str = Field(
        description="the first user message, personal data redacted, at most 80 characters"
    )
    status: Literal["active", "closed"]
    turn_count: int
    created_at: datetime
    last_turn_at: datetime | None = Field(description="null until its first turn ended")
    last_verdict: Literal["allow", "refuse"] | None
    idle_close_at: datetime | None = Field(
        description="an active session closes by itself about then if it takes no turn"
    )
    deleted_after: datetime | None = Field(
        description="a closed session is deleted then (the namespace's retention)"
    )

    @classmethod
    def of(cls, item: SessionItem) -> SessionOut:
        return cls(
            session_id=item.session_id,
            title=item.title,
            status=item.status,  # type: ignore[arg-type]
            turn_count=item.turn_count,
            created_at=item.created_at,
            last_turn_at=item.last_turn_at,
            last_verdict=item.last_verdict,  # type: ignore[arg-type]
            idle_close_at=item.idle_close_at,
            deleted_after=item.deleted_after,
        )


class SessionList(BaseModel):
    sessions: list[SessionOut]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )
