"""What a policy change takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PolicyChangeRequest:
    tenant: str
    actor: str
    #: Where the `policy.changed` event goes (ORCH_TRAINING_AUDIT_TOPIC).
    audit_topic: str
    additions: dict[str, Any] = field(default_factory=dict)
    traceparent: str = ""
