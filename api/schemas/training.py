"""Request and response bodies of the training routes (docs/interface.md, section 4,
"Training mode")."""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel, ConfigDict, Field

from workflows.training_mode.types import MAX_TTL_SECONDS, TrainingStatus


class EnableBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: The lower bound is ORCH_TRAINING_MIN_TTL_SECONDS (60), checked by the route.
    ttl_seconds: int = Field(ge=1, le=MAX_TTL_SECONDS)
    reason: str = Field(min_length=1, max_length=500)


class DisableBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


class TrainingOut(BaseModel):
    tenant: str
    enabled: bool
    holder: str | None
    fence: int
    reason: str | None
    enabled_at: str | None
    expires_at: str | None

    @classmethod
    def of(cls, status: TrainingStatus) -> TrainingOut:
        return cls(**dataclasses.asdict(status))
