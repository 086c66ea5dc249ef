"""The dataclasses TrainingModeWorkflow takes, keeps and returns (one per tenant)."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.events import PublishRequest
    from core.training_lock import Lease

MAX_TTL_SECONDS = 86400


@dataclass
class TrainingSettings:
    """What the API decides at start; carried unchanged across continue-as-new."""

    tenant: str
    audit_topic: str
    min_ttl_seconds: int = 60
    max_ttl_seconds: int = MAX_TTL_SECONDS
    #: How often a live lease is checked in Redis (and written back if Redis lost it).
    lease_check_seconds: float = 10.0
    #: Continue as new after this many checks in one run (about 8 history events each).
    checks_per_run: int = 360


@dataclass
class PolicyIdentity:
    """The policy in force when the transition was asked for; stamped on its audit event."""

    policy_version: str = ""
    constitution_hash: str = ""


@dataclass
class EnableRequest:
    actor: str
    ttl_seconds: int
    reason: str
    trace_id: str = ""
    traceparent: str = ""
    policy: PolicyIdentity = field(default_factory=PolicyIdentity)


@dataclass
class DisableRequest:
    actor: str
    reason: str = ""
    trace_id: str = ""
    traceparent: str = ""
    policy: PolicyIdentity = field(default_factory=PolicyIdentity)


@dataclass
class TrainingStatus:
    """GET /v1/training (docs/interface.md, section 4); `fence` is the latest one handed out."""

    tenant: str
    enabled: bool
    holder: str | None
    fence: int
    reason: str | None
    enabled_at: str | None
    expires_at: str | None


@dataclass
class TrainingState:
    """Everything a run knows; continue-as-new passes it whole to the next run."""

    settings: TrainingSettings
    #: The live lease, None while the mode is off.
    lease: Lease | None = None
    #: The latest fence handed out (0: never enabled).
    fence: int = 0
    #: Transitions so far; numbers each audit event, so its id is stable across retries.
    transitions: int = 0
    outbox: list[PublishRequest] = field(default_factory=list)
    #: Tokens of acquires whose outcome is unknown (Redis timed out): released when it answers.
    unsettled_tokens: list[str] = field(default_factory=list)
    policy: PolicyIdentity = field(default_factory=PolicyIdentity)
    checks_this_run: int = 0
