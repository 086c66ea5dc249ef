"""Bodies of the erasure routes (POST /v1/erasure, GET /v1/erasure/{job_id})."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workflows.erasure.types import ErasureProgress


class ErasureBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(
        min_length=1, max_length=256, description="the `sub` whose sessions are all deleted"
    )


class ErasureJob(BaseModel):
    job_id: str
    status: Literal["running", "completed", "failed"]
    sessions_found: int | None = Field(
        description="the subject's sessions to delete; null while they are looked up"
    )
    sessions_deleted: int

    @classmethod
    def of(cls, job_id: str, status: str, progress: ErasureProgress) -> ErasureJob:
        return cls(
            job_id=job_id,
            status=status,  # type: ignore[arg-type]
            sessions_found=progress.sessions_found,
            sessions_deleted=progress.sessions_deleted,
        )
