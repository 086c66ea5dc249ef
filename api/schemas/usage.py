"""The body of GET /v1/usage."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Usage(BaseModel):
    turns: int
    prompt_tokens: int
    completion_tokens: int
    refused: dict[str, int] = Field(description="refused turns by policy category")


class UsageRow(Usage):
    key: str = Field(description="the UTC day (`YYYY-MM-DD`) or the subject of the row")


class QuotaUse(BaseModel):
    used: int
    limit: int = Field(description="0: no quota")


class Quota(BaseModel):
    window_seconds: int
    window_ends_at: str
    tokens: QuotaUse = Field(description="the tenant's")
    turns: QuotaUse
    subject_tokens: QuotaUse = Field(description="the caller's own")
    subject_turns: QuotaUse


class UsageReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    group_by: str
    subject: str | None = Field(description="whose usage: null for the whole tenant")
    total: Usage
    groups: list[UsageRow]
    quota: Quota
