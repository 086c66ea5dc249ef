"""A turn's admission, in its SLM activity before the call: the input check and the lease.

The input check (the message with the session's recent user turns, through every layer of
the policy) and the read of the tenant's training lease run side by side. The SLM server is
called only when the check allows the input; a refused input comes back as the activity's
result, so the turn costs no workflow task and no local activity of its own before the
call (README, Performance).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from activities.moderation import ModerationRequest, Moderator, Verdict
from activities.training_lock import Lease, ReadRequest, TrainingLock

log = logging.getLogger("orchestrator.admission")
#: The longest a turn waits for its lease read: past it, Redis counts as away.
LEASE_READ_SECONDS = 2.0


@dataclass
class AdmissionRequest:
    check: ModerationRequest
    tenant: str


@dataclass
class Admitted:
    verdict: Verdict
    #: The tenant's live training lease when the turn was admitted. None when off, and when
    #: Redis could not be read: a turn is only ever marked under a lease that was seen.
    lease: Lease | None = None

    @property
    def refused(self) -> bool:
        return self.verdict.decision == "refuse"


class Admission:
    def __init__(self, moderator: Moderator, lock: TrainingLock) -> None:
        self._moderator = moderator
        self._lock = lock

    async def admit(self, request: AdmissionRequest) -> Admitted:
        check = request.check
        verdict, lease = await asyncio.gather(
            self._moderator.check(check.text, check.stage, check.context),
            self._lease(request.tenant),
        )
        return Admitted(verdict, lease)

    async def _lease(self, tenant: str) -> Lease | None:
        try:
            async with asyncio.timeout(LEASE_READ_SECONDS):
                return (await self._lock.read(ReadRequest(tenant))).lease
        except Exception as error:  # noqa: BLE001 - Redis away: the turn goes on, unmarked
            log.warning("training lock unreadable; the turn is not marked: %s", error)
            return None
