"""A turn's admission, in its SLM activity before the call: the input check and the lease.

The input check (the message with the session's recent user turns, through every layer of
the policy) and the read of the tenant's training lease run side by side; so do the checks
of the earlier messages a new session is seeded with (the OpenAI-compatible route), each
as if it had been said in the session: a user's at the input stage, an assistant's at the
output stage. A refused seed message refuses the turn, as part of its input. The SLM server is
called only when the check allows the input; a refused input comes back as the activity's
result, so the turn costs no workflow task and no local activity of its own before the
call (README, Performance).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.moderation.moderator import Moderator
from core.moderation.verdict import ModerationRequest, Verdict
from core.training_lock import Lease

log = logging.getLogger("orchestrator.admission")
#: The longest a turn waits for its lease read: past it, Redis counts as away.
LEASE_READ_SECONDS = 2.0


@dataclass
class AdmissionRequest:
    check: ModerationRequest
    tenant: str
    #: The checks of the earlier messages the turn seeds its session with, oldest first.
    seed: list[ModerationRequest] = field(default_factory=list)


@dataclass
class Admitted:
    verdict: Verdict
    #: The tenant's live training lease when the turn was admitted. None when off, and when
    #: Redis could not be read: a turn is only ever marked under a lease that was seen.
    lease: Lease | None = None
    #: A seed message was refused (`verdict` is its refusal): the seed is not kept.
    seed_refused: bool = False

    @property
    def refused(self) -> bool:
        return self.verdict.decision == "refuse"


class Admission:
    def __init__(self, read_lease: Callable[[str], Awaitable[Lease | None]]) -> None:
        #: The tenant's live training lease, if any (activities/training_lock.py).
        self._read_lease = read_lease

    async def admit(self, request: AdmissionRequest, moderator: Moderator) -> Admitted:
        """The turn checked by `moderator` (its tenant's), beside the lease read."""
        lease_read = asyncio.ensure_future(self._lease(request.tenant))
        checks = [*request.seed, request.check]
        try:
            verdicts = await asyncio.gather(
                *(moderator.check(c.text, c.stage, c.context, c.asked) for c in checks)
            )
        finally:
            lease = await lease_read  # bounded by LEASE_READ_SECONDS; it never raises
        refused = next((v for v in verdicts[:-1] if v.decision == "refuse"), None)
        if refused is not None:  # the seed is part of the turn's input
            verdict = dataclasses.replace(refused, stage="input", checked_stage="input")
            return Admitted(verdict, lease, seed_refused=True)
        return Admitted(verdicts[-1], lease)

    async def _lease(self, tenant: str) -> Lease | None:
        try:
            async with asyncio.timeout(LEASE_READ_SECONDS):
                return await self._read_lease(tenant)
        except Exception as error:  # noqa: BLE001 - Redis away: the turn goes on, unmarked
            log.warning("training lock unreadable; the turn is not marked: %s", error)
            return None
