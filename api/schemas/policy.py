"""Bodies of the tenant policy routes (GET and PUT /v1/policy)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PolicyOut(BaseModel):
    policy_version: str = Field(
        description="the version turns of the tenant are checked with: the operator's, or "
        "`<operator's>+<tenant>.<n>` with the tenant's additions"
    )
    constitution_hash: str = Field(description="sha256 of that policy, merged")
    floor_version: str = Field(description="the operator's policy under it")
    sequence: int = Field(description="how many changes the tenant made; 0: none")
    additions: dict[str, Any] = Field(
        description="what the tenant added, by category: `rules`, `threshold`, `message`"
    )
    changed_at: str | None
    changed_by: str | None = Field(description="the `sub` of the admin who made the change")
