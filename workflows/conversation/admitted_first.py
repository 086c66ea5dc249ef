"""How turns were admitted before their SLM activity did it: the input check and, beside it
in the same workflow task, the tenant's training lease, as local activities before the call.

Sessions started before keep this path until they continue as new (`workflow.patched` in
workflows/conversation/turn.py), so their histories replay; new turns never take it. Workflow code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from core.moderation.verdict import Verdict
    from core.training_lock import Lease
    from workflows.patches import LEASE_READ_FAILURE_TOLERATED, TRAINING_LEASE_READ
    from workflows.training_mode import calls as lease_calls


async def admit(check: Awaitable[Verdict], tenant: str) -> tuple[Verdict, Lease | None]:
    """The input `check`'s verdict and the tenant's training lease, read beside it."""
    if not workflow.patched(TRAINING_LEASE_READ.id):
        return await check, None
    verdict, lease = await asyncio.gather(check, _training_lease(tenant))
    return verdict, lease


async def _training_lease(tenant: str) -> Lease | None:
    try:
        return (await lease_calls.read(tenant)).lease
    except (ActivityError, ApplicationError, TemporalTimeoutError) as error:
        if not isinstance(error, ActivityError) and not workflow.patched(
            LEASE_READ_FAILURE_TOLERATED.id
        ):
            raise
        # Unknown counts as off: a turn is only ever marked under a lease that was seen.
        workflow.logger.warning("training lock unreadable; the turn is not marked")
        return None
