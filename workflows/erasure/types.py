"""What an erasure takes and tells."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ErasureRequest:
    tenant: str
    #: Who asked (the token's `sub`), for the tombstones.
    actor: str
    #: The topic of the tenant's conversation events, where the tombstones go.
    events_topic: str
    #: The policy in force, which every event names.
    policy_version: str
    constitution_hash: str
    #: Sessions to delete by id.
    session_ids: list[str] = field(default_factory=list)
    #: And every session this subject owns (its erasure); None: only `session_ids`.
    subject: str | None = None
    traceparent: str = ""


@dataclass
class ErasureProgress:
    #: The sessions to delete; None while the subject's are still looked up.
    sessions_found: int | None = None
    sessions_deleted: int = 0
